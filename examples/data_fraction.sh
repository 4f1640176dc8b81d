#!/usr/bin/env bash
# Time to grok against the training fraction (Power et al. 2022; Nanda et al. 2023's logs for
# p=113: ~1.1k epochs at 50% train, 3.3k at 40%, 8.3k at 30%): less data, a longer delay.
# 4 fractions x 3 seeds of the default run, one compiled program per fraction; each member
# stops once validation accuracy has held 99% for 500 steps. About 10 minutes on 2 CPU cores.
set -euo pipefail
grokkit sweep --train-frac 0.5,0.4,0.35,0.3 --seed 0:3 --run-dir runs/data-fraction
grokkit report runs/data-fraction
