#!/usr/bin/env python3
"""Plots of `ingrain report`: student success over iterations per cell, from OUT/summary.csv.

    /usr/bin/python3 tools/plot_report.py OUT/summary.csv OUT

Writes OUT/student_success.png (every cell, mean with its 95% confidence band over seeds) and
OUT/cell_<id>.png (one cell: student and teacher success). Needs Debian's python3-matplotlib;
exits with code 3 and says so when it is missing (ingrain report then writes CSV and Markdown only).
"""
import csv
import sys

NO_MATPLOTLIB = 3


def number(text):
    return float(text) if text else None


def read_summary(path):
    cells = {}  # id -> {"label": ..., "rows": [(iteration, student, ci, teacher, ci)]}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cell = cells.setdefault(int(row["cell_id"]), {"label": row["cell"], "rows": []})
            cell["rows"].append((int(row["iteration"]), number(row["student_mean"]), number(row["student_ci95"]),
                                 number(row["teacher_mean"]), number(row["teacher_ci95"])))
    return cells


def draw(ax, xs, means, cis, label, style):
    points = [(x, m, c) for x, m, c in zip(xs, means, cis) if m is not None]
    if not points:
        return
    x, m, c = zip(*points)
    line, = ax.plot(x, m, style, marker="o", label=label)
    band = [(xi, mi - ci, mi + ci) for xi, mi, ci in points if ci is not None]
    if band:
        bx, lo, hi = zip(*band)
        ax.fill_between(bx, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)


def setup(ax, title):
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out success")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_report.py: matplotlib is not installed (Debian: apt-get install python3-matplotlib)",
              file=sys.stderr)
        return NO_MATPLOTLIB
    summary, out = sys.argv[1], sys.argv[2]
    cells = read_summary(summary)

    fig, ax = plt.subplots(figsize=(8, 5))
    for cell_id, cell in sorted(cells.items()):
        rows = cell["rows"]
        draw(ax, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], f"{cell_id}: {cell['label']}", "-")
    setup(ax, "student success (no experience in context), mean and 95% CI over seeds")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(f"{out}/student_success.png", dpi=120)
    plt.close(fig)

    for cell_id, cell in sorted(cells.items()):
        rows = cell["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r[0] for r in rows]
        draw(ax, xs, [r[1] for r in rows], [r[2] for r in rows], "student (no experience)", "-")
        draw(ax, xs, [r[3] for r in rows], [r[4] for r in rows], "teacher (with experience)", "--")
        setup(ax, f"cell {cell_id}: {cell['label']}")
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(f"{out}/cell_{cell_id}.png", dpi=120)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
