#!/usr/bin/env python3
"""Prints the table of src/text/normalize.c: the code points that libutf8proc normalizes but
`tokenizers` leaves alone, because its normalization tables (the unicode-normalization-alignments
crate) are Unicode 9.0 while utf8proc's are newer. Each such character is new since then:
tokenizers treats it as a starter with no decomposition, which tune mirrors by passing it
through and normalizing the text on either side of it on its own.

Found by asking both, for every code point s, in every form (NFC, NFD, NFKC, NFKD): s alone
(a decomposition), "a" + s + U+0334 and "a" + U+0345 + s (a non-zero combining class: U+0334
has class 1, U+0345 class 240, so either order moves); and for every canonical decomposition,
whether its composition agrees (a new composition pair adds its second character).

Setup:  tools/ref/.venv/bin/pip install tokenizers   (and libutf8proc, `make deps`)
Run:    tools/ref/.venv/bin/python tools/ref/unicode_norm_gaps.py   (about 40 s)
"""
import ctypes
import sys

import tokenizers
from tokenizers import normalizers

UTF8PROC = ctypes.CDLL("libutf8proc.so.2")
UTF8PROC.utf8proc_map.restype = ctypes.c_ssize_t
UTF8PROC.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t,
                                  ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
UTF8PROC.utf8proc_version.restype = ctypes.c_char_p
UTF8PROC.utf8proc_unicode_version.restype = ctypes.c_char_p
LIBC = ctypes.CDLL(None)
STABLE, COMPAT, COMPOSE, DECOMPOSE = 1 << 1, 1 << 2, 1 << 3, 1 << 4

# The options normalize.c gives utf8proc_map for each form.
FORMS = {"NFC": (normalizers.NFC(), STABLE | COMPOSE),
         "NFD": (normalizers.NFD(), STABLE | DECOMPOSE),
         "NFKC": (normalizers.NFKC(), STABLE | COMPOSE | COMPAT),
         "NFKD": (normalizers.NFKD(), STABLE | DECOMPOSE | COMPAT)}


def utf8proc(s, options):
    b = s.encode()
    p = ctypes.c_void_p()
    n = UTF8PROC.utf8proc_map(b, len(b), ctypes.byref(p), options)
    assert n >= 0, s
    out = ctypes.string_at(p, n).decode()
    LIBC.free(p)
    return out


def gaps():
    found = set()
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        s = chr(c)
        for ref, options in FORMS.values():
            if any(ref.normalize_str(t) != utf8proc(t, options)
                   for t in (s, "a" + s + "\u0334", "a\u0345" + s)):
                found.add(c)
                break
        d = utf8proc(s, STABLE | DECOMPOSE)
        if len(d) > 1 and utf8proc(d, STABLE | COMPOSE) != FORMS["NFC"][0].normalize_str(d):
            found.add(ord(d[-1]))
    return sorted(found)


def main():
    ranges = []
    for c in gaps():
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    print(f"/* utf8proc {UTF8PROC.utf8proc_version().decode()} (Unicode "
          f"{UTF8PROC.utf8proc_unicode_version().decode()}) against tokenizers "
          f"{tokenizers.__version__}: {sum(b - a + 1 for a, b in ranges)} code points */")
    for i in range(0, len(ranges), 4):
        print("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in ranges[i:i + 4]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
