#!/usr/bin/env bash
# The six audits of docs/audit.md ("Audits of models whose answer we know"), from scratch: train the quick models
# (PCFG and stories, seed 0; the never-learned controls seeds 0 and 1), export them, write the capability files and
# audit each pair through the native path into docs/audits/quick/<name>/. Then regenerate the table:
#   wrapperlab report STORE --docs docs/audit.md      (any store with a reproduction; the audits block reads the files)
# Usage: bash docs/audits/make_quick.sh [STORE]      (from the repository root, the package installed with [hf])
set -euo pipefail
STORE=${1:-runs-audits}
OUT=docs/audits/quick
W="wrapperlab"
Q="--profile quick --quiet --runs $STORE"
id() { grep -oE "$1-[0-9a-f]{12}" | tail -1; }   # the run a command printed (made, or reused)

# PCFG: pretrained (low prior), its fine-tunes to count b at eta_M with C_Tr = 1 and 0, the never-had-it models
PT=$($W pretrain $Q --seed 0 | id pretrain)
FT1=$($W finetune $PT $Q --lr M --c-tr 1 | id finetune)
FT0=$($W finetune $PT $Q --lr M --c-tr 0 | id finetune)
NEVER0=$($W pretrain $Q --seed 0 --prior 0,1,0 | id pretrain)
NEVER1=$($W pretrain $Q --seed 1 --prior 0,1,0 | id pretrain)
# stories: pretrained, not-in-PT (seeds 0 and 1), the Twist deleted by filtering and by gradient ascent at eta_M
SPT=$($W stories pretrain $Q --seed 0 | id stories-pretrain)
SC0=$($W stories pretrain $Q --seed 0 --control | id stories-pretrain)
SC1=$($W stories pretrain $Q --seed 1 --control | id stories-pretrain)
SF=$($W stories delete $SPT $Q --protocol filter --lr M | id stories-finetune)
SGA=$($W stories delete $SPT $Q --protocol grad_ascent --lr M | id stories-finetune)
echo "runs: $PT $FT1 $FT0 $NEVER0 $NEVER1 $SPT $SC0 $SC1 $SF $SGA"

HF=$STORE/hf
mkdir -p $HF
for run in $PT $FT1 $FT0 $NEVER0 $NEVER1 $SPT $SC0 $SC1 $SF $SGA; do
  [ -d $HF/$run ] || $W export $run $HF/$run --runs $STORE > /dev/null
done
$W data sample --task count --operand a --window 64 --n 64 --capability > $STORE/count_a.jsonl
$W stories capability --feature Twist --n 64 --tokenizer $HF/$SPT/tokenizer.json --max-tokens 160 --out $STORE/twist.jsonl

audit() {  # NAME BASE FINETUNED CONTROL CAPABILITY
  $W audit $HF/$2 $HF/$3 --control $HF/$4 --capability $5 --out $OUT/$1 --quiet --force
}
audit pcfg-wrapper-ctr1 $PT $FT1 $NEVER0 $STORE/count_a.jsonl
audit pcfg-ctr0 $PT $FT0 $NEVER0 $STORE/count_a.jsonl
audit pcfg-never-learned $PT $NEVER0 $NEVER1 $STORE/count_a.jsonl
audit story-F-etaM $SPT $SF $SC0 $STORE/twist.jsonl
audit story-grad-ascent $SPT $SGA $SC0 $STORE/twist.jsonl
audit story-never-learned $SPT $SC0 $SC1 $STORE/twist.jsonl
