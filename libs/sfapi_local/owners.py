"""The user and group names a listing shows for a file (numbers where the system has no name for them).

The stand-in's ``htar`` member headers, ``hsi ls -l`` and the API's ``utilities/ls`` all show them.
"""

from __future__ import annotations


def user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (KeyError, ImportError):
        return str(gid)
