#!/usr/bin/env bash
# Time to grok against the training fraction (Power et al. 2022, Nanda et al. 2023):
# less data, longer delay. Each run stops once validation accuracy has held 99%.
set -euo pipefail
for frac in 0.5 0.4 0.35 0.3; do
  grokkit train --task mod-add --p 97 --train-frac "$frac" --run-dir "runs/frac-$frac" | tail -n 3
done
