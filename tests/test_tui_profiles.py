"""Saving and deleting node profiles (the TUI's connection form), read back by target.py."""

from __future__ import annotations

import tomllib

import pytest

from qrdoctor.core.profiles import (
    ProfileError,
    check_profile_name,
    delete_profile,
    dumps,
    profile_from_target,
    save_profile,
)
from qrdoctor.core.target import Target, load_profiles, resolve_target, target_from_profile


def test_dumps_round_trips_awkward_values():
    data = {
        "title": 'a "quoted" \\ back\\slash\ttab\nnewline \x01 \x7f é 漢',
        "n": 4242, "t": 2.5, "big": 1e300, "on": True, "off": False, "list": ["a", 1, [2.0]],
        "profiles": {
            "plain": {"host": "h", "port": 104},
            "with space.and.dots": {"host": "x", "nested": {"k": "v"}},
            'quote"d': {"inline": [{"a": 1}]},
            "empty": {},
        },
    }
    assert tomllib.loads(dumps(data)) == data


def test_save_then_read_with_the_same_code_as_check(tmp_path):
    path = tmp_path / "sub" / "profiles.toml"
    target = Target(host="pacs.example.org", port=4242, called_ae="ORTHANC", calling_ae="WS1",
                    move_ae="WS1STORE", store_port=11112, advertise="10.0.0.5", timeout=7.5)
    save_profile("ward 3", target, path)
    assert target_from_profile("ward 3", {}, path) == target
    # move_ae equal to the calling AE is not stored, so it follows the calling AE
    save_profile("plain", Target(host="h", port=104, called_ae="PACS"), path)
    assert "move_ae" not in load_profiles(path)["plain"]


def test_resolve_target_uses_the_profiles_file(tmp_path, monkeypatch):
    path = tmp_path / "profiles.toml"
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(path))
    save_profile("main", Target(host="10.1.1.1", port=104, called_ae="MAIN"))
    assert resolve_target("main", timeout=3.0).label == "MAIN@10.1.1.1:104"


def test_other_content_of_the_file_is_kept(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text('# mine\nowner = "imaging IT"\n[profiles.old]\ncalled_ae = "OLD"\nhost = "o"\n'
                    'port = 11112\ncustom = "kept"\n[other]\nx = 1\n', encoding="utf-8")
    save_profile("new", Target(host="n", port=104, called_ae="NEW"), path)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["owner"] == "imaging IT" and data["other"] == {"x": 1}
    assert data["profiles"]["old"]["custom"] == "kept"
    assert set(data["profiles"]) == {"old", "new"}
    assert delete_profile("old", path) is True
    assert delete_profile("old", path) is False
    assert set(load_profiles(path)) == {"new"}


def test_saving_replaces_a_profile_and_keeps_the_file_mode(tmp_path):
    path = tmp_path / "profiles.toml"
    save_profile("p", Target(host="a", port=104, called_ae="A"), path)
    path.chmod(0o600)
    save_profile("p", Target(host="b", port=105, called_ae="B"), path)
    assert load_profiles(path)["p"]["host"] == "b"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["profiles.toml"]


@pytest.mark.parametrize("name, message", [
    ("", "empty"), ("  ", "empty"), ("a@b", "contains '@'"), ("x\ny", "control"), ("n" * 65, "longer"),
])
def test_bad_profile_names_are_refused(name, message):
    with pytest.raises(ProfileError, match=message):
        check_profile_name(name)


def test_a_broken_file_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text("[profiles\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="Cannot read the profiles file"):
        save_profile("x", Target(host="h", port=104, called_ae="X"), path)
    assert path.read_text(encoding="utf-8") == "[profiles\n"


def test_profile_from_target_leaves_out_unset_options():
    entry = profile_from_target(Target(host="h", port=104, called_ae="X"))
    assert entry == {"called_ae": "X", "host": "h", "port": 104, "calling_ae": "QRDOCTOR",
                     "store_port": 11113, "timeout": 10.0}


def test_a_profile_carries_option_values_under_their_own_names(tmp_path):
    path = tmp_path / "profiles.toml"
    target = Target(host="h", port=104, called_ae="X")
    save_profile("capped", target, path, options={"probe_limit": 300, "stall_s": 4.5})
    entry = load_profiles(path)["capped"]
    assert entry["probe_limit"] == 300 and entry["stall_s"] == 4.5
    # The target read back is unchanged by them
    assert target_from_profile("capped", {}, path) == target
    # An option may not take a name the target's keys use
    with pytest.raises(ProfileError, match="clash"):
        save_profile("bad", target, path, options={"timeout": 3.0})


def test_the_saved_profile_command_is_quoted_for_a_shell():
    import shlex

    from qrdoctor.tui.connect import check_command

    assert check_command("main") == "qrdoctor check main"
    assert check_command("my pacs.1") == "qrdoctor check 'my pacs.1'"
    assert shlex.split(check_command("it's \"x\"")) == ["qrdoctor", "check", "it's \"x\""]
