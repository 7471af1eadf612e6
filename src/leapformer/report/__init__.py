"""Reporting shared by the benchmarks and the task reports: markdown tables and
target rows (:mod:`.tables`), seed and bootstrap confidence intervals and
"not separated" verdicts (:mod:`.intervals`), paired-by-seed differences
(:mod:`.paired`) and the names of mechanism variants (:mod:`.names`)."""
