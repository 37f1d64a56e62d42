"""A list of common passwords, generated from the patterns that dominate leaked-password lists.

No third-party list is shipped: the set is built from well-known base words, keyboard walks,
digit runs and the usual suffixes (``1``, ``123``, ``!``, years), which covers the top of every
published list (``123456``, ``password``, ``qwerty123``, ``iloveyou`` …). A deployment may add
its own list with ``AEGIS_COMMON_PASSWORDS_FILE`` (one password per line).
"""

from __future__ import annotations

import functools

_WORDS = """
password passw0rd p@ssword p@ssw0rd pass qwerty qwertyuiop asdfgh asdfghjkl zxcvbn zxcvbnm
azerty qwertz letmein welcome welcome1 admin administrator root toor login guest master
iloveyou loveyou love lovely princess dragon monkey shadow sunshine football baseball
basketball soccer hockey superman batman trustno1 whatever freedom starwars pokemon
michael jennifer jordan hunter ranger buster thomas robert daniel charlie andrew joshua
matthew jessica ashley michelle amanda nicole summer winter spring autumn flower
chocolate cookie banana orange apple secret changeme default test tester testing
hello hello123 hellothere abc abcd abcdef abcdefg abcdefgh abc123 computer internet
samsung google facebook linkedin yahoo microsoft windows apple mustang ferrari
porsche harley killer hacker hack matrix cheese pepper ginger tigger maggie buddy
bailey daisy molly lucky angel angels baby babygirl sweety sweetheart family friends
friend jesus christ god blessed heaven money dollar qazwsx wsxedc qweasd 1qaz2wsx
zaq12wsx 1q2w3e4r 1q2w3e 1qazxsw2 aaaaaa aaaaaaaa access access14 mypass mypassword
passpass password1 password12 password123 letmein1 welcome123 adminadmin rootroot
senha contraseña motdepasse passwort parola salasana wachtwoord lozinka
"""

_WALKS = (
    "123456789012345",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv",
    "zaq1xsw2cde3vfr4",
    "098765432109876",
    "abcdefghijklmnop",
)

_SUFFIXES = ("", "1", "12", "123", "1234", "12345", "!", "!!", "1!", "123!", "@123", "01", "007")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The generated set of common passwords (lower-case; compare case-insensitively)."""
    words = set(_WORDS.split())
    out: set[str] = set()
    for word in words:
        for suffix in _SUFFIXES:
            out.add(word + suffix)
        for year in range(1960, 2031):
            out.add(f"{word}{year}")
    for walk in _WALKS:
        for n in range(6, len(walk) + 1):
            out.add(walk[:n])
    for digit in "0123456789":
        for n in range(6, 17):
            out.add(digit * n)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        for n in range(8, 13):
            out.add(letter * n)
    for n in range(6, 13):
        out.add("".join(str(i % 10) for i in range(1, n + 1)))
        out.add("".join(str(i % 10) for i in range(n, 0, -1)))
    for year in range(1900, 2100):
        for month in range(1, 13):
            out.add(f"{month:02d}{year}")
            out.add(f"{year}{month:02d}")
    return frozenset(p.lower() for p in out)
