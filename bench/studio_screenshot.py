"""docs/studio.png, the README's picture of the studio, from a real dataset: scikit-learn's digits as class folders,
the designer's pipeline with "Compare two models" (ResNet-18 and DenseNet-121 from scratch, the demo's
transformation), trained on the page in headless Chromium, then Evaluate's confusion matrix.

    .venv/bin/python bench/studio_screenshot.py [--images 900] [--epochs 4] [--out docs/studio.png]

Drives the page with tests/test_studio_page.py's helpers (Debian's chromium and chromium-driver). Prints each
model's best validation accuracy as the Runs view shows it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import test_studio_page as page  # noqa: E402 - the page's own helpers, after tests/ is on the path
from imgtrain.demo import write_digits_folder  # noqa: E402

SOURCE = "digits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=900, help="how many of the 1,797 digits (default 900)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "studio.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgtrain-studio-") as folder:
        root = Path(folder)
        write_digits_folder(root / SOURCE, limit=args.images)
        with page._studio(root) as base:
            driver = page._chrome(1280, 800)
            try:
                started = time.monotonic()
                run_id = _train_two_models(driver, base, args.epochs)
                print(f"run #{run_id} finished in {time.monotonic() - started:.0f} s")
                page._q(driver, '.box[data-node="evaluate"] .box-title').click()
                page._wait(driver).until(lambda d: page._all(d, "#metrics-overview"))
                page._q(driver, "#output-body [data-tab='confusion']").click()
                time.sleep(1)  # the charts settle to their width
                driver.save_screenshot(str(args.out))
                print(f"wrote {args.out}")
                page._q(driver, "#view-runs-tab").click()
                page._wait(driver).until(lambda d: page._all(d, f'#runs-body tr[data-run="{run_id}"]'))
                for row in page._texts(driver, f'#runs-body tr[data-run="{run_id}"]'):
                    print(" | ".join(row.split("\t")))
            finally:
                driver.quit()


def _train_two_models(driver, base: str, epochs: int) -> int:
    """Choose the digits, Compare two models, the demo's settings in each box, submit; the run's id once finished."""
    page._open(driver, base)
    page._q(driver, "#choose-images").click()
    page._wait(driver).until(lambda d: page._all(d, f'#files-list li[data-path="{SOURCE}"] .choose'))
    page._q(driver, f'#files-list li[data-path="{SOURCE}"] .choose').click()
    page._q(driver, "#compare-models").click()
    for model in ("resnet", "densenet"):
        page._select(driver, model)
        page._untick(driver, "pretrained")
    page._select(driver, "transform")
    for step in ("resize", "center_crop", "random_horizontal_flip"):  # 32 px digits as they are; a flipped 2 is no 2
        page._untick(driver, step)
    for node in ("train", "train-2"):
        page._select(driver, node)
        page._set(driver, "epochs", str(epochs))
    run_id = page._submit(driver)
    status = page._wait_status(driver, ("finished", "failed"), timeout=3600)
    if status != "finished":
        raise SystemExit(f"run #{run_id} {status}: {page._text(driver, '#run-error')}")
    return run_id


if __name__ == "__main__":
    main()
