"""Which distribution installed fastradio, and refusing a mix of them.

Three distributions install the same import package ``fastradio``: ``fastradio`` (the sdist,
built from source with the local CUDA), ``fastradio-cu12`` and ``fastradio-cu13`` (prebuilt
wheels, README "Install"). pip sees three unrelated projects, so installing one over another
silently overwrites the first one's files (``fastradio._C`` is then whichever came last, while
both stay "installed"), and uninstalling either later deletes files the other one needs. Importing
fastradio in that state is refused with the fix, before anything is used.
"""

from __future__ import annotations

import importlib.metadata as md

#: Every distribution that installs the import package ``fastradio``.
DISTRIBUTIONS = ("fastradio", "fastradio-cu12", "fastradio-cu13")


def installed(path: list[str] | None = None) -> dict[str, list[str]]:
    """{distribution name: ["<version> (<location>)", ...]} of the fastradio distributions found on
    ``path`` (default ``sys.path``)."""
    found: dict[str, list[str]] = {}
    where = {} if path is None else {"path": path}
    for name in DISTRIBUTIONS:  # a name search lists folders only: no METADATA of other projects is read
        for dist in md.distributions(name=name, **where):
            location = getattr(dist, "_path", None)
            location = f" ({location.parent})" if location is not None else ""
            found.setdefault(name, []).append(f"{dist.version}{location}")
    return found


def mixed_install_error(found: dict[str, list[str]]) -> str | None:
    """Why ``found`` (as from installed()) is not a usable installation, or None when it is."""
    if len(found) < 2:
        return None
    listing = "; ".join(f"{name} {', '.join(v)}" for name, v in sorted(found.items()))
    return (
        f"fastradio is installed by more than one distribution here: {listing}. They all install the "
        "same package `fastradio`, so the one installed last overwrote the others' files (the "
        "compiled fastradio._C is whichever came last) and uninstalling any of them would delete "
        "files the others need. Keep exactly one:\n"
        "    pip uninstall -y fastradio fastradio-cu12 fastradio-cu13\n"
        "    pip install fastradio-cu13   # CUDA 13 driver; fastradio-cu12 for a CUDA 12 driver; "
        "fastradio to build from source (README: Install)")


def check_single_distribution(path: list[str] | None = None) -> None:
    """Raise ImportError when more than one fastradio distribution is installed."""
    problem = mixed_install_error(installed(path))
    if problem:
        raise ImportError(problem)
