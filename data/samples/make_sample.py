"""Write one HAPT experiment as the sample CSV described in data/samples/README.md.

Usage: /usr/bin/python3 make_sample.py HAPT_DIR EXPERIMENT USER OUT.csv

HAPT_DIR is the folder of the HAPT data set that contains RawData/. The
accelerometer and gyroscope rows of the experiment are merged row by row, the
activity id of each row is taken from RawData/labels.txt (0 for rows outside
every segment), and values are rounded to 6 decimals.
"""

import sys

import numpy as np

SAMPLE_RATE_HZ = 50


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    root, experiment, user, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    stem = f"{root}/RawData/{{}}_exp{experiment:02d}_user{user:02d}.txt"
    acc = np.loadtxt(stem.format("acc"), ndmin=2)
    gyro = np.loadtxt(stem.format("gyro"), ndmin=2)
    if acc.shape != gyro.shape or acc.shape[1] != 3:
        sys.exit(f"acc {acc.shape} and gyro {gyro.shape}: expected equal shapes of 3 columns")

    labels = np.zeros(len(acc), dtype=int)
    for row_experiment, _, activity, start, end in np.loadtxt(
        f"{root}/RawData/labels.txt", dtype=int, ndmin=2
    ):
        if row_experiment == experiment:
            labels[start - 1 : end] = activity

    with open(out_path, "w", encoding="ascii") as out:
        out.write("t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,label\n")
        for i in range(len(acc)):
            values = ",".join(f"{v:.6f}" for v in (*acc[i], *gyro[i]))
            out.write(f"{i / SAMPLE_RATE_HZ:.2f},{values},{labels[i]}\n")


if __name__ == "__main__":
    main()
