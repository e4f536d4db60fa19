#!/usr/bin/env bash
# The training data of the shipped pilots: 75 summer-forest and 25 summer-forest-with-distractors
# expert flights (DART perturbation 0.2, 2.5 s hold in front of the chair), seeds 0-74 and 1000-1024.
set -euo pipefail
out=${1:-bags}
liquid-pilot collect --scenario forest_summer --episodes 75 --seed 0 --out "$out" --set task.hold_s=2.5
liquid-pilot collect --scenario distractors --episodes 25 --seed 1000 --out "$out" --set task.hold_s=2.5
