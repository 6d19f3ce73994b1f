"""Inner-product FE benchmark at 128-bit security: ``--group`` secp256k1 (default) or dsa-3072-256.

Run: ``python -m benchmarks.bench_fe`` (``--quick`` for a small smoke run; ``--group dsa-3072-256``
for the 3072-bit subgroup of Z_p^*). For vectors of 1,000
and 10,000 entries prints the median time of encrypt / keygen / decrypt for

- single-input ABDP (public-key; ``|x| <= 2^16``, ``|y| <= 2^8``), and
- labelled MIFE shaped like HybridAlpha's aggregation: 10 slots of one-dimensional inputs,
  ``rows`` = vector length (one coordinate per row), unit weights, ``|x| <= 2^20``;

and, as ratios measured in the same run, the cost per value against ``phe`` Paillier-2048
encryption / decryption of single values (timed on a sample) and against the plaintext
inner product.
"""

from __future__ import annotations

import argparse

import numpy as np
from phe import paillier

from benchmarks.timing import median_time
from mpcml.dlog import Group, dlog_table
from mpcml.fe import DEFAULT_GROUP, IPFEMasterKey, MIFEMasterKey, group_by_name, ipfe_decrypt, mife_decrypt, mife_key_for_weights

SLOTS = 10


def phe_per_value(samples: int, repeats: int) -> tuple[float, float]:
    pub, priv = paillier.generate_paillier_keypair(n_length=2048)
    values = list(range(samples))
    enc = median_time(lambda: [pub.encrypt(v) for v in values], repeats) / samples
    cts = [pub.encrypt(v) for v in values]
    dec = median_time(lambda: [priv.decrypt(c) for c in cts], repeats) / samples
    return enc, dec


def ipfe_figures(n: int, repeats: int, group: Group) -> dict[str, float]:
    data = np.random.default_rng(n)  # benchmark data only
    x, y = data.integers(-(2**16), 2**16, n), data.integers(-(2**8), 2**8, n)
    master = IPFEMasterKey.setup(n, 2**16, 2**8, group)
    dlog_table(group, master.public.result_bound)
    ct = master.public.encrypt(x)
    key = master.keygen(y)
    if ipfe_decrypt(master.public, key, ct) != int(x @ y):
        raise SystemExit("IPFE decryption does not match the plaintext inner product")
    return {
        "encrypt": median_time(lambda: master.public.encrypt(x), repeats),
        "keygen": median_time(lambda: master.keygen(y), repeats),
        "decrypt": median_time(lambda: ipfe_decrypt(master.public, key, ct), repeats),
        "plain": median_time(lambda: x @ y, 5),
    }


def mife_figures(n: int, repeats: int, group: Group) -> dict[str, float]:
    data = np.random.default_rng(n + 1)  # benchmark data only
    xs = [data.integers(-(2**20), 2**20, (n, 1)) for _ in range(SLOTS)]
    master = MIFEMasterKey.setup(SLOTS, 1, 2**20, 1, group)
    bound = master.result_bound
    dlog_table(group, bound)
    label = ("bench", n)
    slot0 = master.slot_key(0)
    cts = {i: master.slot_key(i).encrypt(xs[i], label) for i in range(SLOTS)}
    key = mife_key_for_weights(master, [1] * SLOTS, label, rows=n)
    if mife_decrypt(group, key, cts, bound) != sum(xs).ravel().tolist():
        raise SystemExit("MIFE decryption does not match the plaintext sum")
    return {
        "encrypt": median_time(lambda: slot0.encrypt(xs[0], label), repeats),
        "keygen": median_time(lambda: mife_key_for_weights(master, [1] * SLOTS, label, rows=n), repeats),
        "decrypt": median_time(lambda: mife_decrypt(group, key, cts, bound), repeats),
        "plain": median_time(lambda: sum(xs), 5),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="vectors of 100 and 300, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--group", default=DEFAULT_GROUP.name, help="secp256k1 or dsa-3072-256")
    args = parser.parse_args(argv)
    sizes, repeats = ((100, 300), 1) if args.quick else ((1_000, 10_000), args.repeats)
    group = group_by_name(args.group)
    group.gpow(1)  # warm the generator tables outside the timings
    phe_enc, phe_dec = phe_per_value(20 if args.quick else 100, repeats)
    print(f"group {group.name} ({group.element_bytes}-byte elements); medians of {repeats} run(s); phe-2048 per value: "
          f"encrypt {phe_enc * 1e3:.2f} ms, decrypt {phe_dec * 1e3:.2f} ms")
    header = f"{'scheme':<26}{'n':>7}{'encrypt s':>11}{'keygen s':>10}{'decrypt s':>11}"
    print(header + f"{'enc/value vs phe':>18}{'dec/value vs phe':>18}{'dec vs plain':>14}")
    for name, figures in (("ABDP single-input", ipfe_figures), (f"MIFE {SLOTS} slots x 1, labelled", mife_figures)):
        for n in sizes:
            f = figures(n, repeats, group)
            values = n if name.startswith("ABDP") else n * SLOTS
            print(
                f"{name:<26}{n:>7}{f['encrypt']:>11.3f}{f['keygen']:>10.4f}{f['decrypt']:>11.3f}"
                f"{f['encrypt'] / n / phe_enc:>17.3f}x{f['decrypt'] / values / phe_dec:>17.3f}x"
                f"{f['decrypt'] / f['plain']:>13.0f}x"
            )
    print("enc/value: one party's encryption time per entry; dec/value: decryption time per "
          "encrypted entry consumed; ratios < 1 mean faster than phe.")


if __name__ == "__main__":
    main()
