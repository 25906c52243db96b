"""The class report's build time and size against the number of students (issue 16: a 300-student
report in at most 10 s, its size growing with the distinct mistakes, not the students).

    .venv/bin/python benchmarks/bench_report.py                   # 30, 300 and 3000 students
    .venv/bin/python benchmarks/bench_report.py --students 300 --screenshot docs/report.png

Each class is synthetic (autograder/classroom/synthetic_results.py: the real check list, failures naming
the reference's mistake codes, a few error rows of both sides), written as results.json files the
way grade-class stores them; the time is ``python -m autograder report``'s work: reading every
results.json, the tables, the plots and writing report.html, mistakes.csv and checks.csv.
``--screenshot`` also renders the first class's page in headless Chromium (for the README).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.classroom import report, store, synthetic_results


def build(n: int, folder: Path) -> dict:
    results = synthetic_results.synthetic_results(n, seed=1)
    for student, result in results.items():
        path = store.result_path(folder, student)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json(), encoding="utf-8")
    started = time.monotonic()
    written = report.write_report(folder)
    seconds = time.monotonic() - started
    return {"students": n, "seconds": seconds, "html": written.report.stat().st_size,
            "mistakes_csv": written.mistakes.stat().st_size, "distinct": len(written.data.mistakes),
            "page": written.report}


def screenshot(page: Path, out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "shot.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={raw}",
                        "--window-size=1200,2400", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
        from PIL import Image
        image = Image.open(raw).convert("RGB")
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"screenshot: {out} ({out.stat().st_size / 1024:.0f} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="*", default=[30, 300, 3000])
    parser.add_argument("--screenshot", type=Path, help="render the first class's report.html to this PNG")
    args = parser.parse_args()
    print(f"{'students':>8} {'build':>8} {'report.html':>12} {'mistakes.csv':>13} {'distinct mistakes':>18}")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.students:
            found = build(n, Path(tmp) / str(n))
            first = first or found
            print(f"{n:>8} {found['seconds']:>7.2f}s {found['html'] / 1024:>10.0f}KB "
                  f"{found['mistakes_csv'] / 1024:>11.0f}KB {found['distinct']:>18}")
        if args.screenshot:
            screenshot(first["page"], args.screenshot)


if __name__ == "__main__":
    main()
