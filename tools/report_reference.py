#!/usr/bin/env python3
"""Reference numbers for tests/unit/test_report.c, from SciPy (an implementation independent of
mpi/report.c): Student-t quantiles and the mean / 95% confidence half width of the synthetic runs.

    /usr/bin/python3 tools/report_reference.py     # prints the C initialisers pasted into the test
"""
import numpy as np
from scipy import stats

# the synthetic runs of test_report.c: cell -> iteration -> values over seeds (student success)
SAMPLES = {
    "a_it0": [0.2, 0.4, 0.6],
    "a_it1": [0.5, 0.55, 0.9],
    "a_teacher_it0": [0.7, 0.8, 0.75],
    "b_it0": [0.1, 0.3],
}
# the teacher's lead: teacher minus student success within each run (cell A, iteration 0)
SAMPLES["a_lead_it0"] = [t - s for s, t in zip(SAMPLES["a_it0"], SAMPLES["a_teacher_it0"])]
DFS = [1, 2, 3, 10, 29, 30, 31, 45, 100, 1000]


def main():
    print("// df, t_0.975 (scipy.stats.t.ppf)")
    print("static const double t_ref[][2] = {" +
          ", ".join("{%d, %.12f}" % (df, stats.t.ppf(0.975, df)) for df in DFS) + "};")
    print("// name: mean, 95% CI half width = t(n-1) * sd / sqrt(n)")
    for name, x in SAMPLES.items():
        x = np.asarray(x)
        half = stats.t.ppf(0.975, len(x) - 1) * stats.sem(x)
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert abs((hi - lo) / 2 - half) < 1e-12
        print("static const double %s_ref[2] = {%.12f, %.12f};" % (name, x.mean(), half))


if __name__ == "__main__":
    main()
