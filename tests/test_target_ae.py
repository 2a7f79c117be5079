"""AE titles are validated without importing pynetdicom (issue 14, instant start), by the rule
pynetdicom applies to the titles of the association requests it builds: the local rule must
agree with pynetdicom's ``validate_ae`` on every title, verdict and reason alike."""

from __future__ import annotations

import pytest

from qrdoctor.core.target import TargetError, ae_title_problem, check_ae_title
from qrdoctor.dicom import compat

TRICKY = [
    "QRDOCTOR", "A", "ORTHANC", "  PADDED  ", " LEAD", "TRAIL ", "A" * 16, "A" * 17, "A" * 15 + " ",
    "A" * 16 + " ", " " * 3 + "A" * 14, "QR-DOC_TOR.1", "lower case", "*", "?", "ANY*", "A?B",
    "O'BRIEN", '"QUOTED"', "A=B", "A^B", "A~B", "A@B", "A/B", "A|B", "{}[]", "A;B", "100%",
    "BACK\\SLASH", "\\", "TAB\tHERE", "NEW\nLINE", "CR\rHERE", "NUL\x00", "\x1b[31mRED", "DEL\x7f",
    "\x1f", "MÜLLER", "CAFÉ", "Ａ", "NBSP\xa0", "ZW\u200bSP", "RTL\u200f", "e\u0301", "\x80",
    "\x9f", "ÿ", "日本", "😀", "\ud800", "\ufeffBOM", "A\u2028B", "ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ",
    "A" * 40, "\t" * 20, "BACK\\SLASH" * 2,
]
# every character below U+0800 and a few far beyond, alone and inside a title
SINGLE = [chr(c) for c in range(0x800)] + ["\u3000", "\ufffd", "\U0001f600", "\U000e0001"]


@pytest.mark.parametrize("title", TRICKY)
def test_local_rule_is_pynetdicoms_rule(title: str) -> None:
    ok, why = compat.validate_ae(title)
    assert (ae_title_problem(title) == "") is ok
    assert ae_title_problem(title) == why


def test_local_rule_is_pynetdicoms_rule_for_every_character() -> None:
    differ = [t for c in SINGLE for t in (c, f"AB{c}CD")
              if ae_title_problem(t) != compat.validate_ae(t)[1]]
    assert differ == []


@pytest.mark.parametrize("title", [t for t in TRICKY if t.strip()])
def test_check_ae_title_says_what_pynetdicom_says(title: str) -> None:
    ok, why = compat.validate_ae(title)
    if ok:
        assert check_ae_title(title, "The PACS AE title") == title.strip()
    else:
        with pytest.raises(TargetError) as err:
            check_ae_title(title, "The PACS AE title")
        assert str(err.value) == f"The PACS AE title {title!r} is not a valid AE title: it {why}"
