"""Before `make setup` creates .venv: stop early, with the fix, on a Python or a machine orbit cannot run on.

    python3 local/supported.py        # exit 1 and one message when this Python/machine is not supported

Run by the Makefile with whatever `python3` is first on PATH (on a Mac that may be Apple's 3.9), so this file
keeps to syntax that old interpreters can parse and imports nothing from orbit. README's "Supported
platforms" is the table behind it; ci.platforms checks that the pins have wheels on each supported platform.
"""

import platform
import sys

MINIMUM = (3, 11)
MAC_HINT = (
    "install Python 3.11 from python.org (the macOS 64-bit universal2 installer) or with `brew install "
    "python@3.11`, then run `make setup PYTHON=python3.11`"
)


def problem(version, system, machine):
    """Why orbit cannot be set up with this interpreter on this machine, or None when it can."""
    found = ".".join(str(part) for part in version[:3])
    if system == "win32":
        return (
            "Windows without WSL is not supported (the Makefile, bash and the local servers' process groups "
            "are POSIX): install WSL 2 with Ubuntu and run orbit inside it"
        )
    if system == "darwin" and machine == "x86_64":
        return (
            "macOS on Intel is not supported: TensorFlow 2.21 publishes no wheel for Intel Macs. Use a Mac "
            "with Apple Silicon, or Linux. On an Apple Silicon Mac this Python is an Intel build running "
            "under Rosetta: " + MAC_HINT
        )
    if tuple(version[:2]) < MINIMUM:
        hint = MAC_HINT if system == "darwin" else "install it and run `make setup PYTHON=python3.11`"
        return f"orbit needs Python 3.11 or newer; this is Python {found} ({sys.executable}): {hint}"
    return None


def main():
    reason = problem(tuple(sys.version_info), sys.platform, platform.machine())
    if reason:
        print(f"error: {reason}. See README, 'Supported platforms'.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
