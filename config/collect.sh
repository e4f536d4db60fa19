#!/usr/bin/env bash
# The training data of the shipped pilots, in folders of OUT (train on them all: --data OUT/*/):
#   expert/   100 expert flights in the summer forest: 75 plain (seeds 0-74) and 25 with three red look-alikes
#             (seeds 1000-1024); DART-style perturbation 0.2, a 2.5 s hold in front of the chair
#   search/   50 expert flights that start with the chair out of view, 40-180 degrees to the left (seeds
#             2000-2024) or right (3000-3024) of the nose (sim/training): the expert turns left until it first
#             sees the chair (--search left, a rule the camera can follow), then flies to it as usual
#   daggerN/  closed-loop data aggregation (DAgger), ROUNDS rounds: the pilot trained on every folder before
#             (config/train_cfc_ncp_c3.yaml, recipe C3, seed 0, saved as OUT/daggerN.pt: the data the shipped
#             pilots learnt from) flies 100 flights in the same training scenes (40 plain, 20 look-alikes,
#             20 + 20 search; seeds from N*10000) with the same perturbation, and the expert labels what it saw;
#             the flights it fails are kept: they are the states it needs labels for
#   far_lost/  after the DAgger rounds (ROUNDS 2), one more in the far states (best-pilot study, rounds 4 and 5):
#             the default recipe's pilot trained on every folder above (the default config with seed 0 on one
#             thread and round 4's 25 epochs, saved as OUT/far_driver.pt: the study's driver, runs/c5_seed0.pt;
#             round 6 trains the shipped pilots for 50) flies 100 flights that
#             start 8-15 m from the chair (sim/training/far_long.yaml, seeds 40000-40099), and the expert labels
#             them with its search rule (--search left) kept for a chair lost after a sighting: once it has been
#             out of view 1 s, the search turn until it is in view again (--search-after-lost 1; round 5, C7:
#             round 4's C6 labelled those frames by the shortest turn to the chair, and its pilots stopped searching)
#   random/   100 expert flights, each in a random forest look (--set scene.season=random: ground, sky, trunk and
#             canopy colours drawn per flight; best-pilot study, rounds 7 and 8, C9): 50 plain (seeds 50000-50049),
#             25 with look-alikes (51000-51024), 25 searches (52000-52012 left, 53000-53011 right); no pilot drives
#             them, so they are collected whatever ROUNDS is, and no driver above learns from them
# usage: config/collect.sh [OUT] [ROUNDS]    (OUT: bags/, ROUNDS: 2; 0 gives the expert's flights alone: expert/,
#        search/ and random/)
# Interrupted, the same command continues: finished bags are kept and a round's training resumes.
set -euo pipefail
out=${1:-bags}
rounds=${2:-2}
hold=(--set task.hold_s=2.5)
liquid-pilot collect --scenario forest_summer --episodes 75 --seed 0 --out "$out/expert" "${hold[@]}"
liquid-pilot collect --scenario distractors --episodes 25 --seed 1000 --out "$out/expert" "${hold[@]}"
liquid-pilot collect --scenario search_left --search left --episodes 25 --seed 2000 --out "$out/search" "${hold[@]}"
liquid-pilot collect --scenario search_right --search left --episodes 25 --seed 3000 --out "$out/search" "${hold[@]}"
data=("$out/expert" "$out/search")
for round in $(seq 1 "$rounds"); do
  pilot="$out/dagger$round.pt"
  resume=()
  [ -f "$out/dagger$round.state.pt" ] && resume=(--resume)
  liquid-pilot train --config config/train_cfc_ncp_c3.yaml --data "${data[@]}" --out "$pilot" --seed 0 "${resume[@]}"
  seed=$((round * 10000))
  into=(--driver "$pilot" --search left --out "$out/dagger$round" "${hold[@]}")
  liquid-pilot collect --scenario forest_summer --episodes 40 --seed $seed "${into[@]}"
  liquid-pilot collect --scenario distractors --episodes 20 --seed $((seed + 1000)) "${into[@]}"
  liquid-pilot collect --scenario search_left --episodes 20 --seed $((seed + 2000)) "${into[@]}"
  liquid-pilot collect --scenario search_right --episodes 20 --seed $((seed + 3000)) "${into[@]}"
  data+=("$out/dagger$round")
done
if [ "$rounds" -ge 2 ]; then
  resume=()
  [ -f "$out/far_driver.state.pt" ] && resume=(--resume)
  liquid-pilot train --config config/train.yaml --data "${data[@]}" --out "$out/far_driver.pt" --seed 0 --threads 1 \
      --epochs 25 "${resume[@]}"
  liquid-pilot collect --scenario far_long --episodes 100 --seed 40000 --driver "$out/far_driver.pt" --search left \
      --search-after-lost 1 --out "$out/far_lost" "${hold[@]}"
fi
look=(--set task.hold_s=2.5 --set scene.season=random --out "$out/random")
liquid-pilot collect --scenario forest_summer --episodes 50 --seed 50000 "${look[@]}"
liquid-pilot collect --scenario distractors --episodes 25 --seed 51000 "${look[@]}"
liquid-pilot collect --scenario search_left --search left --episodes 13 --seed 52000 "${look[@]}"
liquid-pilot collect --scenario search_right --search left --episodes 12 --seed 53000 "${look[@]}"
