"""The mutations of the fuzzing peer: what it does to one message before it goes out.

A :class:`Mutation` is one operator from :data:`OPERATORS` with its own ``random.Random``; the
peer hands it each layer of the message it mutates -- the command set's elements (``cmd``), the
data set's (``ds``), the association items (``assoc``), the PDVs (``pdv``), the PDUs (``pdu``),
the bytes (``wire``) and the transport (``send``) -- and it changes the one layer it is for:
bit flips, length fields (0, 1, the field's maximum, off by one to four, huge), truncation,
elements inserted, dropped or duplicated, other PDU types, garbage, an early close, a
connection held open. Only the given generator is drawn from: the same seed, the same bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from support.fuzzwire import UNDEFINED, Elem, Item, Pdu, Pdv, text, us

HOSTILE_TEXT = (
    "\x1b]2;pwned\x07title", "\x1b[2J\x1b[31mred", "line\r\nbreak\x00nul", "[x](javascript:alert(1))",
    "![i](http://example.invalid/t.png)", "<script>alert(1)</script>", "DOE^JOHN 01.01.1970 ID 12345678",
    "caf\xe9 \xff\xfe", "../../../../tmp/x", "%s%n%x", "\x9b31m C1 CSI", "\u202eRTL",
)
STATUSES = (0x0000, 0xFF00, 0xFF01, 0xFE00, 0xA700, 0xA701, 0xA702, 0xA801, 0xA900, 0xB000,
            0xC000, 0xC001, 0x0122, 0x0124, 0x0110, 0x0211, 0x0001, 0xFFFF)
COMMAND_FIELDS = (0x0001, 0x8001, 0x0010, 0x8010, 0x0020, 0x8020, 0x0021, 0x8021, 0x0030, 0x8030,
                  0x0FFF, 0x0100, 0x8100, 0x0000, 0xFFFF)
TS_UIDS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50",
           "1.2.840.10008.1.2.1.99", "", "1.2.3.4", "not a uid")


def lengths(actual: int, rng: random.Random) -> int:
    """A wrong length for a field whose right value is ``actual``."""
    choices = [0, 1, 2, 3, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000000, 0x40000000,
               *(actual + d for d in (-4, -3, -2, -1, 1, 2, 3, 4) if actual + d >= 0)]
    return rng.choice([c for c in choices if c != actual] or [actual + 1])


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def hostile_value(rng: random.Random) -> bytes:
    pick = rng.randrange(6)
    if pick == 0:
        return text(rng.choice(HOSTILE_TEXT))
    if pick == 1:
        return b"A" * rng.choice((64, 1024, 65536))
    if pick == 2:
        return random_bytes(rng, rng.randrange(0, 40))
    if pick == 3:
        return b""
    if pick == 4:
        return text("^".join(rng.choice(("DOE", "ROE", "SMITH")) for _ in range(rng.randrange(1, 6))))
    return text(rng.choice(("1.2.3", "20240101-20240102", "19700101", "\\\\", "*", "?", "..", "00/00/0000")))


def nested_sequence(depth: int, explicit: bool, undefined: bool) -> bytes:
    """A sequence nested ``depth`` deep (Referenced Series Sequence inside itself)."""
    inner = b""
    for _ in range(depth):
        seq_len = UNDEFINED if undefined else len(inner) + 8
        item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED if undefined else len(inner)) + inner
        if undefined:
            item += struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        if explicit:
            head = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, seq_len if not undefined else UNDEFINED)
        else:
            head = struct.pack("<HHI", 0x0008, 0x1115, seq_len if not undefined else UNDEFINED)
        inner = head + item + (struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) if undefined else b"")
        if len(inner) > 400_000:
            break
    return inner


def hostile_element(rng: random.Random, explicit: bool) -> Elem:
    pick = rng.randrange(9)
    if pick == 0:  # a very long Patient Name
        return Elem(0x00100010, b"PN", b"DOE^" + b"J" * rng.choice((70, 4096, 65530)))
    if pick == 1:  # an error comment with hostile text
        return Elem(0x00000902, b"LO", hostile_value(rng))
    if pick == 2:  # deep sequences, defined or undefined lengths
        depth = rng.choice((2, 50, 500, 10000))
        return _RawElem(0, b"", nested_sequence(depth, explicit, rng.random() < 0.5))
    if pick == 3:  # an unknown or private element
        tag = rng.choice((0x00091001, 0x7FE00010, 0x00080005, 0xFFFEE000, 0x00000000, rng.getrandbits(32)))
        return Elem(tag, rng.choice((b"UN", b"OB", b"ZZ", b"\x00\x00", b"SQ", b"LO")), hostile_value(rng))
    if pick == 4:  # a character set nobody knows, or ISO 2022 escapes
        return Elem(0x00080005, b"CS", text(rng.choice(("ISO 2022 IR 87", "KLINGON", "ISO_IR 192\\GB18030",
                                                        "\x1b$B", ""))))
    if pick == 5:  # an element whose length runs past the end
        return Elem(0x00100020, b"LO", b"FZ", length=rng.choice((0xFFFF, 0x7FFFFFFF, UNDEFINED, 9)))
    if pick == 6:  # a path-traversal UID
        return Elem(0x00080018, b"UI", text(rng.choice(("../../../../etc/passwd", "/tmp/x", "1.2.3/../4", "..")), "UI"))
    if pick == 7:  # a date or number that is not one
        tag, vr = rng.choice(((0x00080020, b"DA"), (0x00200013, b"IS"), (0x00201208, b"IS"), (0x00100030, b"DA")))
        return Elem(tag, vr, hostile_value(rng))
    return Elem(rng.getrandbits(16) << 16 | rng.getrandbits(16), random_bytes(rng, 2), random_bytes(rng, rng.randrange(0, 12)))


class _RawElem(Elem):
    """Bytes that are already whole elements, smuggled in as one Elem (no header of its own)."""

    def encode(self, explicit: bool) -> bytes:
        return self.value


# ----------------------------------------------------------------------------------------------
# mutations
# ----------------------------------------------------------------------------------------------


Op = Callable[[random.Random, object], object]


@dataclass(frozen=True)
class Operator:
    name: str
    layer: str  # cmd | ds | assoc | pdv | pdu | wire | send | replace
    fn: Op
    kinds: frozenset[str] | None = None  # message kinds it applies to (None: any)


DIMSE_KINDS = frozenset({"C-ECHO-RSP", "C-FIND-RSP", "C-MOVE-RSP", "C-GET-RSP", "C-STORE-RQ"})
ASSOC_KINDS = frozenset({"A-ASSOCIATE-AC", "A-ASSOCIATE-RQ"})


def _pick(rng: random.Random, items: list) -> int | None:
    return rng.randrange(len(items)) if items else None


# -- command and data set elements --------------------------------------------------------------

def elem_drop(rng, elems):
    i = _pick(rng, elems)
    if i is not None:
        del elems[i]
    return elems


def elem_dup(rng, elems):
    i = _pick(rng, elems)
    if i is not None:
        elems.insert(rng.choice((i + 1, len(elems))), replace(elems[i]))
    return elems


def elem_len(rng, elems):
    i = _pick(rng, elems)
    if i is not None:
        elems[i].length = lengths(len(elems[i].value), rng)
    return elems


def elem_value(rng, elems):
    i = _pick(rng, elems)
    if i is not None:
        elems[i].value = hostile_value(rng) if rng.random() < 0.5 else random_bytes(rng, rng.choice((0, 1, 3, 8)))
    return elems


def elem_order(rng, elems):
    rng.shuffle(elems)
    return elems


def cmd_insert(rng, elems):
    pick = rng.randrange(4)
    if pick == 0:
        new = Elem(0x00000902, b"LO", hostile_value(rng))  # Error Comment
    elif pick == 1:
        new = Elem(0x00000901, b"AT", random_bytes(rng, rng.choice((2, 4, 5, 8))))  # Offending Element
    elif pick == 2:
        new = Elem(rng.choice((0x00001020, 0x00001021, 0x00001022, 0x00001023)), b"US",
                   random_bytes(rng, rng.choice((0, 1, 2, 3, 4))))
    else:
        new = Elem(rng.getrandbits(16), b"UN", random_bytes(rng, rng.randrange(0, 10)))
    elems.insert(rng.randrange(len(elems) + 1), new)
    return elems


def _set_us(elems, elem, value):
    for e in elems:
        if e.tag == elem:
            e.value, e.length = us(value), None
            return elems
    elems.append(Elem(elem, b"US", us(value)))
    return elems


def cmd_status(rng, elems):
    return _set_us(elems, 0x0900, rng.choice(STATUSES) if rng.random() < 0.8 else rng.getrandbits(16))


def cmd_field(rng, elems):
    return _set_us(elems, 0x0100, rng.choice(COMMAND_FIELDS))


def cmd_msgid(rng, elems):
    old = next((e for e in elems if e.tag in (0x0120, 0x0110)), None)
    base = struct.unpack("<H", old.value[:2])[0] if old is not None and len(old.value) >= 2 else 1
    return _set_us(elems, old.tag if old is not None else 0x0120,
                   rng.choice((base + 1, base - 1, 0, 0xFFFF, rng.getrandbits(16))))


def cmd_dataset_type(rng, elems):
    return _set_us(elems, 0x0800, rng.choice((0x0101, 0x0000, 0x0001, 0xFEFE, rng.getrandbits(16))))


def cmd_counts(rng, elems):
    """Sub-operation counters that lie: negative-looking, huge, going backwards."""
    for elem in (0x1020, 0x1021, 0x1022, 0x1023):
        if rng.random() < 0.6:
            _set_us(elems, elem, rng.choice((0, 0xFFFF, 1, 1000, rng.getrandbits(16))))
    return elems


def ds_insert(rng, elems):
    explicit = bool(getattr(elems, "explicit", False))
    elems.insert(rng.randrange(len(elems) + 1), hostile_element(rng, explicit))
    return elems


def ds_vr(rng, elems):
    i = _pick(rng, elems)
    if i is not None:
        elems[i].vr = rng.choice((b"ZZ", b"\x00\x00", b"SQ", b"UN", b"OB", b"xx", random_bytes(rng, 2)))
        if rng.random() < 0.3:
            elems[i].long = not elems[i].long if elems[i].long is not None else True
    return elems


# -- association items ---------------------------------------------------------------------------

def item_len(rng, assoc):
    items = assoc.all_items()
    i = _pick(rng, items)
    if i is not None:
        item = items[i][1]
        item.length = lengths(len(item.fixed) + sum(len(s.encode()) for s in item.subs), rng) & 0xFFFF
    return assoc


def item_drop(rng, assoc):
    items = assoc.all_items()
    i = _pick(rng, items)
    if i is not None:
        parent, item = items[i]
        parent.subs.remove(item)  # type: ignore[union-attr]
    return assoc


def item_dup(rng, assoc):
    items = assoc.all_items()
    i = _pick(rng, items)
    if i is not None:
        parent, item = items[i]
        parent.subs.append(replace(item, subs=list(item.subs)))  # type: ignore[union-attr]
    return assoc


def item_insert(rng, assoc):
    kind = rng.choice((0x00, 0x11, 0x21, 0x50, 0x56, 0x5F, 0xFF, rng.getrandbits(8)))
    fixed = bytes([rng.choice((1, 2, 3, 255)), 0, rng.randrange(5), 0]) if kind == 0x21 else random_bytes(rng, rng.randrange(0, 16))
    assoc.items.insert(rng.randrange(len(assoc.items) + 1), Item(kind, fixed))
    return assoc


def _user_sub(assoc, sub_type):
    for _parent, item in assoc.all_items():
        if item.type == sub_type:
            return item
    return None


def item_max_length(rng, assoc):
    sub = _user_sub(assoc, 0x51)
    if sub is not None:
        sub.fixed = struct.pack(">I", rng.choice((0, 1, 6, 11, 12, 13, 0xFFFFFFFF, 0x7FFFFFFF, rng.getrandbits(32))))
        if rng.random() < 0.2:
            sub.fixed = sub.fixed[:rng.randrange(4)]
    return assoc


def item_implementation(rng, assoc):
    sub = _user_sub(assoc, rng.choice((0x52, 0x55)))
    if sub is not None:
        sub.fixed = rng.choice((b"\x1b]2;x\x07", b"caf\xe9\xff", b"", b"A" * 17, b"A" * 300, b"\x00" * 4,
                                random_bytes(rng, rng.randrange(1, 20))))
    return assoc


def item_context(rng, assoc):
    results = [i for i in assoc.items if i.type in (0x20, 0x21)]
    i = _pick(rng, results)
    if i is None:
        return assoc
    item = results[i]
    fixed = bytearray(item.fixed.ljust(4, b"\x00"))
    what = rng.randrange(3)
    if what == 0:
        fixed[0] = rng.choice((0, 2, 4, 254, 255, fixed[0] + 2 & 0xFF))  # context id
    elif what == 1:
        fixed[2] = rng.choice((1, 2, 3, 4, 5, 255))  # result
    else:
        ts = next((s for s in item.subs if s.type == 0x40), None)
        if ts is not None:
            ts.fixed = text(rng.choice(TS_UIDS), "UI")
    item.fixed = bytes(fixed)
    return assoc


def assoc_fields(rng, assoc):
    what = rng.randrange(4)
    if what == 0:
        assoc.version = rng.choice((0, 2, 0xFFFF))
    elif what == 1:
        assoc.called = random_bytes(rng, 16)
    elif what == 2:
        assoc.calling = b"\x1b[31m" + random_bytes(rng, 11)
    else:
        app = next((i for i in assoc.items if i.type == 0x10), None)
        if app is not None:
            app.fixed = rng.choice((b"", b"1.2.3", b"A" * 70, random_bytes(rng, 10)))
    return assoc


# -- PDVs and PDUs ---------------------------------------------------------------------------------

def pdv_len(rng, pdvs):
    i = _pick(rng, pdvs)
    if i is not None:
        pdvs[i].length = lengths(len(pdvs[i].data) + 2, rng)
    return pdvs


def pdv_context(rng, pdvs):
    i = _pick(rng, pdvs)
    if i is not None:
        pdvs[i].context_id = rng.choice((0, 2, 4, 255, pdvs[i].context_id + 2))
    return pdvs


def pdv_control(rng, pdvs):
    i = _pick(rng, pdvs)
    if i is not None:
        pdvs[i].control = rng.choice((pdvs[i].control ^ 1, pdvs[i].control ^ 2, 0xFF, 0x04, 0, 3))
    return pdvs


def pdv_split(rng, pdvs):
    """Tiny fragments (valid: the standard allows any fragmentation)."""
    out = []
    size = rng.choice((1, 2, 7))
    for p in pdvs:
        if len(p.data) <= size or len(out) > 2000:
            out.append(p)
            continue
        pieces = [p.data[i:i + size] for i in range(0, len(p.data), size)]
        for n, piece in enumerate(pieces):
            out.append(Pdv(p.context_id, (p.control & 1) | (p.control & 2 if n == len(pieces) - 1 else 0), piece))
    return out


def pdv_empty(rng, pdvs):
    pdvs.insert(rng.randrange(len(pdvs) + 1), Pdv(pdvs[0].context_id if pdvs else 1, rng.choice((0, 1, 2, 3)), b"",
                                                 length=rng.choice((None, 0, 1))))
    return pdvs


def pdv_reorder(rng, pdvs):
    if len(pdvs) > 1:
        i, j = rng.sample(range(len(pdvs)), 2)
        pdvs[i], pdvs[j] = pdvs[j], pdvs[i]
    return pdvs


def pdv_drop(rng, pdvs):
    return elem_drop(rng, pdvs)


def pdu_type(rng, pdus):
    i = _pick(rng, pdus)
    if i is not None:
        pdus[i].type = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 0x16, 0x48, 0xFF))
    return pdus


def pdu_len(rng, pdus):
    i = _pick(rng, pdus)
    if i is not None:
        pdus[i].length = lengths(len(pdus[i].body), rng)
    return pdus


def pdu_reserved(rng, pdus):
    i = _pick(rng, pdus)
    if i is not None:
        pdus[i].reserved = rng.getrandbits(8) | 1
    return pdus


def pdu_dup(rng, pdus):
    i = _pick(rng, pdus)
    if i is not None:
        pdus.insert(i, replace(pdus[i]))
    return pdus


def pdu_inject(rng, pdus):
    extra = rng.choice((Pdu(0x05, bytes(4)), Pdu(0x06, bytes(4)), Pdu(0x07, bytes([0, 0, 2, 0])),
                        Pdu(0x02, bytes(68)), Pdu(0x04, b""), Pdu(0x03, bytes([0, 1, 1, 7])),
                        Pdu(rng.choice((0x00, 0x08, 0x99)), random_bytes(rng, rng.randrange(0, 32)))))
    pdus.insert(rng.randrange(len(pdus) + 1), extra)
    return pdus


def pdu_body_cut(rng, pdus):
    i = _pick(rng, pdus)
    if i is not None:
        pdus[i].body = pdus[i].body[:rng.randrange(len(pdus[i].body) + 1)]
    return pdus


def pdu_huge(rng, pdus):
    """A header announcing a huge PDU, then some filler (bounded) and silence or a close."""
    i = _pick(rng, pdus) or 0
    if pdus:
        p = pdus[i]
        p.length = rng.choice((0x7FFFFFFF, 0xFFFFFFFF, 64 << 20, 0x40000000, 2 << 20))
        p.stream = rng.choice((0, 1000, 1 << 16, 1 << 20, 3 << 20))
        del pdus[i + 1:]
    return pdus


# -- bytes and transport ---------------------------------------------------------------------------

def wire_bitflip(rng, send):
    data = bytearray(send.data)
    for _ in range(rng.randrange(1, 9)):
        if data:
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    send.data = bytes(data)
    return send


def wire_byte(rng, send):
    data = bytearray(send.data)
    if data:
        data[rng.randrange(len(data))] = rng.choice((0, 0xFF, rng.getrandbits(8)))
    send.data = bytes(data)
    return send


def wire_truncate(rng, send):
    send.data = send.data[:rng.randrange(len(send.data) + 1)]
    send.after = rng.choice(("continue", "close", "hold"))
    return send


def wire_garbage(rng, send):
    junk = rng.choice((random_bytes(rng, rng.randrange(1, 64)), b"HTTP/1.1 400 Bad Request\r\n\r\n",
                       b"\x16\x03\x01\x00\x05hello", b"\x00" * 6, b"\x04\x00\xff\xff\xff\xff"))
    pos = rng.choice((0, len(send.data), rng.randrange(len(send.data) + 1)))
    send.data = send.data[:pos] + junk + send.data[pos:]
    return send


def wire_replace(rng, send):
    send.data = rng.choice((random_bytes(rng, rng.randrange(1, 300)), b"HTTP/1.0 200 OK\r\n\r\n<html>",
                            b"\x15\x03\x03\x00\x02\x02\x28", b"SSH-2.0-OpenSSH\r\n"))
    send.after = rng.choice(("continue", "close", "hold"))
    return send


def send_close_before(rng, send):
    send.prefix, send.after = 0, "close"
    return send


def send_close_after(rng, send):
    send.after = "close"
    return send


def send_hold(rng, send):
    send.prefix, send.after = rng.choice((0, rng.randrange(len(send.data) + 1))), "hold"
    return send


def send_slow(rng, send):
    send.chunk, send.pause = rng.choice((1, 3, 64)), 0.002
    return send


def send_delay(rng, send):
    send.delay = rng.choice((0.05, 0.3, 1.2))
    return send


def _named(layer: str, fn: Op) -> str:
    """cmd_drop, ds_insert, ...: the layer, then what the function does to an element list."""
    return f"{layer}_{fn.__name__.split('_', 1)[1]}"


OPERATORS: tuple[Operator, ...] = (
    *(Operator(_named("cmd", f), "cmd", f, DIMSE_KINDS) for f in (elem_drop, elem_dup, elem_len, elem_value,
                                                                      elem_order, cmd_insert, cmd_status, cmd_field,
                                                                      cmd_msgid, cmd_dataset_type, cmd_counts)),
    Operator("cmd_group_length", "cmd_group", lambda rng, c: replace(c, group_length=lengths(0, rng)), DIMSE_KINDS),
    Operator("cmd_group_drop", "cmd_group", lambda rng, c: replace(c, with_group=False), DIMSE_KINDS),
    *(Operator(_named("ds", f), "ds", f, DIMSE_KINDS) for f in (elem_drop, elem_dup, elem_len, elem_value,
                                                                    elem_order, ds_insert, ds_vr)),
    Operator("ds_remove", "ds_presence", lambda rng, present: False, DIMSE_KINDS),
    Operator("ds_add", "ds_presence", lambda rng, present: True, DIMSE_KINDS),
    Operator("ds_truncate", "ds_bytes", lambda rng, b: b[:rng.randrange(len(b) + 1)], DIMSE_KINDS),
    *(Operator(f.__name__, "assoc", f, ASSOC_KINDS) for f in (item_len, item_drop, item_dup, item_insert,
                                                            item_max_length, item_implementation, item_context,
                                                            assoc_fields)),
    *(Operator(f.__name__, "pdv", f, DIMSE_KINDS) for f in (pdv_len, pdv_context, pdv_control, pdv_split,
                                                          pdv_empty, pdv_reorder, pdv_drop)),
    *(Operator(f.__name__, "pdu", f) for f in (pdu_type, pdu_len, pdu_reserved, pdu_dup, pdu_inject,
                                               pdu_body_cut, pdu_huge)),
    *(Operator(f.__name__, "wire", f) for f in (wire_bitflip, wire_byte, wire_truncate, wire_garbage,
                                                wire_replace)),
    *(Operator(f.__name__, "send", f) for f in (send_close_before, send_close_after, send_hold, send_slow,
                                                send_delay)),
    Operator("replace_rj", "replace", lambda rng, _: Pdu(0x03, bytes([0, rng.choice((1, 2, 0, 9)),
                                                                      rng.choice((1, 2, 3, 0)),
                                                                      rng.randrange(12)])[:rng.choice((4, 4, 3, 1, 0))])),
    Operator("replace_abort", "replace", lambda rng, _: Pdu(0x07, bytes([0, 0, rng.choice((0, 2, 1, 7)),
                                                                         rng.randrange(8)])[:rng.choice((4, 4, 2, 0))])),
)
OPERATOR_NAMES = tuple(o.name for o in OPERATORS)


DATA_SET_LAYERS = frozenset({"ds", "ds_bytes"})


def operators_for(kind: str, with_data_set: bool = False) -> list[Operator]:
    """The operators that change something in a message of this kind (with or without a data set)."""
    out = []
    for o in OPERATORS:
        if o.kinds is not None and kind not in o.kinds:
            continue
        if kind in DIMSE_KINDS and not with_data_set and (o.layer in DATA_SET_LAYERS or o.name == "ds_remove"):
            continue
        if with_data_set and o.name == "ds_add":
            continue
        out.append(o)
    return out


@dataclass
class Mutation:
    """One operator applied to one message; each layer hook changes its layer or returns it as is."""

    operator: Operator
    rng: random.Random
    kind: str

    @property
    def name(self) -> str:
        return self.operator.name

    def at(self, layer: str, value):
        if self.operator.layer != layer:
            return value
        return self.operator.fn(self.rng, value)

    @classmethod
    def choose(cls, kind: str, pick: random.Random, rng: random.Random, with_data_set: bool = False) -> Mutation:
        """An operator drawn with ``pick``; its own choices are drawn from ``rng`` alone, so a strike
        named by its operator (:meth:`named`) replays the same bytes."""
        return cls(pick.choice(operators_for(kind, with_data_set)), rng, kind)

    @classmethod
    def named(cls, name: str, kind: str, rng: random.Random) -> Mutation:
        by_name = {o.name: o for o in OPERATORS}
        if name not in by_name:
            raise KeyError(f"no mutation operator {name!r} (known: {', '.join(by_name)})")
        return cls(by_name[name], rng, kind)
