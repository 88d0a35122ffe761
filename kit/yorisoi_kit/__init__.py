"""The demo and measurement kit: a synthetic brand with ground truth, its source systems and
destinations on loopback, the demo, the benchmarks and the identity evaluation. Not part of the
product: `pip install yorisoi` ships `yorisoi` alone; `yorisoi[kit]` adds this package's needs."""
