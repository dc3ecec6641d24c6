"""What an employee id, a group id and a display name may be: one definition for the HTTP schemas, the
command-line tools and the gallery (no FastAPI here)."""

from __future__ import annotations

import re

# A letter or digit first (so never "." or ".."), then up to 63 of letters, digits and . _ @ -. Ids are compared
# exactly and are unique regardless of case: "E-1" and "e-1" cannot both exist.
EMPLOYEE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
ID_SHAPE = "1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
EMPLOYEE_ID_RULE = f"employee ids are {ID_SHAPE}"
# Display names: 1-200 characters of printable text. Not a control character (C0, DEL and C1, whose U+0085 is a
# line break), nor what reorders or breaks the text it is shown in: the bidirectional marks and overrides
# (U+202E shows "Ada\u202eevol" as "Adalove"), the line and paragraph separators, the byte-order mark and the
# noncharacters U+FFFE and U+FFFF. Joiners stay: scripts and emoji need them.
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ufffe\uffff]{1,200}$"
NAME_SHAPE = "1-200 characters, with no control characters, direction marks or line separators"
NAME_RULE = f"names are {NAME_SHAPE}"

# Group ids follow the same rules, and are unique regardless of case too.
GROUP_ID_PATTERN = EMPLOYEE_ID_PATTERN
GROUP_ID_RULE = f"group ids are {ID_SHAPE}"

# A liveness challenge's id as the service makes them (24 of the URL-safe alphabet), with room to spare.
CHALLENGE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CHALLENGE_ID_SHAPE = "1-64 of A-Z a-z 0-9 _ -, as POST /liveness/challenge gave it"

# What a field that does not match one of these patterns is told, in words (a group id shares an id's).
PATTERN_SHAPES = {EMPLOYEE_ID_PATTERN: ID_SHAPE, NAME_PATTERN: NAME_SHAPE, CHALLENGE_ID_PATTERN: CHALLENGE_ID_SHAPE}

_EMPLOYEE_ID = re.compile(EMPLOYEE_ID_PATTERN)
_NAME = re.compile(NAME_PATTERN)


def is_employee_id(text: str) -> bool:
    return _EMPLOYEE_ID.fullmatch(text) is not None


def is_group_id(text: str) -> bool:
    return _EMPLOYEE_ID.fullmatch(text) is not None


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None
