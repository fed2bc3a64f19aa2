"""``make demo``: fit a LiDAR-like sweep in sensor order and write a picture."""

from __future__ import annotations


def main() -> int:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "plot_mixture.py"
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
