"""Continue training the built-in model from its shipped weights (thinker and talker side by side).

    omnistream train recipes/continue.py thinker [--work runs/cont] [--steps 5000] [--minutes 90] [--lr 1e-3]
    omnistream train recipes/continue.py talker  [--work runs/cont] [--steps 4000] [--minutes 90] [--lr 5e-4]
    omnistream train recipes/continue.py adapters [--work runs/cont]
    omnistream train recipes/continue.py record  [--work runs/cont] [--count 2000]
    omnistream train recipes/continue.py vq      [--work runs/cont]
    omnistream train recipes/continue.py finish  [--work runs/cont] [--out omnistream/assets/builtin]

`--round 2` (with a fresh `--work`, e.g. runs/cont2) is the third session's continuation: every spoken
question rides on a fresh image (QuestionSpeaker's bank of 200 clips per question, speed-perturbed, fresh
noise) instead of a cycled pool of 3000 (image, speech) pairs, with a mix weighted to what round 1 left weak.
`--round 3` (e.g. `--work runs/cont3`) is the fourth session's: the thinker's language model grows from 2 to 4
layers (train/grow.py: the new layers start as exact no-ops, so training starts from round 2's outputs), with
round 2's data, a mix weighted to what round 2 left weak and a per-example loss (the shipped run switched to it
at step 2500 of 7000, after a check showed spoken yes/no answers were not improving). Its config lives in `<work>/assets`; `finish`
ships that config with the weights. Start `thinker` first: it writes the deepened thinker the talker loads.
`--round 4` (e.g. `--work runs/cont4`) is the tenth session's: round 3's data and mix, continued from round 3's
(4-layer) weights, with each spoken question's states pulled towards its typed twin's (data.twin_consistency);
its learning rates follow the clock (`--minutes`), so give a large `--steps`.

The work folder is seeded with the shipped checkpoint's parts (thinker, talker, code2wav) unless it already
holds them, so both stages start from the trained model, not from fresh weights. Run `thinker` and `talker` as
two processes at once: the talker re-reads the thinker's latest weights every `reload_every` steps, so it learns
to speak from the thinker's new hidden states. The codec stays as shipped.
The talker stage also needs the residual VQ whose codes the checkpoint learnt (`<work>/rvq.safetensors`).
Checkpoints assembled since the tenth session carry it (parts.VQ_FILE) and seed_work copies it in. The shipped
one predates that: its VQ was a training-only file of runs/builtin, which is gone, and a fit today gives other
codes (the shipped talker's teacher-forced loss on them is ~11, against 0.21 when round 3 ended), so its talker
cannot be continued on VQ codes. Round 4 therefore trains the talker in three steps after the thinker:
  adapters  refits the work talker's two input projections so that it hears the new thinker as it heard the
            checkpoint's (train/talker_adapters.py; the talker's own weights untouched)
  record    has the checkpoint speak `--count` training examples and keeps the codes of the answers it got
            right (train/talker_codes.py): targets in the shipped codec's own codes
  talker    `--round 4` then trains the talker on those recorded codes against the new thinker
Measured (eleventh session; docs/model-card.md): the refit gives the talker its inputs back (where round 4 and the
shipped model answer in the same words, 9.0% intelligibility WER against 8.9% at seed 4242), but 20 minutes on
the recorded codes (~17 passes) learnt them by heart and made the speech worse (11.1% on those answers); the
shipped model had 5 minutes at lr 1e-4 (~4 passes): 8.7% there, 10.3% against 10.1% at seed 1234.

`--round 5` (twelfth session, e.g. `--work runs/cont5 --minutes 70`) is round 4 again from the round-4 weights at
lr 7e-4, with a mix weighted further to exists, count and describe (ROUND5_MIX) and `--twin-weight` to vary the
twins; then `adapters`, `record` (the round-4 checkpoint speaking) and `talker --round 5 --minutes 5 --lr 1e-4`.
Measured, not shipped (docs/model-card.md): twin weights 1.0 and 2.0 left the mean within a point of the shipped
model's, and 2.0 cost digit transcription and a little intelligibility.

`--round 6` (thirteenth session, e.g. `--work runs/cont6 --minutes 60 --threads 2`) continues the round-4 weights
with round 5's mix and learning rate but no twins: instead every spoken image or video question is answered after
a thinking span that writes the question down as heard (`ThinkerStage(think_spoken=True)`,
data.think_heard_question). The engine shows the span as thinking and the talker never speaks it, so the
talker's inputs for an answer are what they were; `adapters`, `record` and `talker --round 6` follow as in round 5
(a copy of round 5's recording serves: the same round-4 checkpoint spoke it, and `record` skips chunks it finds).
`--round 7` continues round 6's weights the same way at lr 5e-4 with a mix weighted to describe and direction,
the two tasks round 6 left below their bars; its talker again learns from round 5's recording (round 4 speaking,
whose speech was the clearest).
`--round 8` (fourteenth session) continues round 7's weights at lr 4e-4 with a mix weighted further to describe
and direction (ROUND8_MIX), whose scenes of three and four shapes still swapped places; its talker as in round 7.
`vq` reads the lost VQ back from the shipped Code2Wav and a recording (train/vq_recovery.py; a copy of round 5's
serves): espeak-ng answers coded by it and decoded are heard at 2.6% WER (espeak-ng itself: 2.0%), so `talker
--targets vq` can teach the talker from espeak-ng again. Measured, not shipped: 30 minutes of it (2,216 steps, lr
3e-4, against the round-8 thinker) spoke worse than the recorded codes (22.7% against 14.9% on 300 answers, the
losses in long answers), so rounds 8 and 9 keep the recording and the recovered VQ ships for later rounds.
`--round 9` continues round 8's weights at lr 3e-4, weighted further to describe (ROUND9_MIX); measured, not
shipped (docs/model-card.md): better descriptions, but its speech went over the 15% bar on 300 answers.
`--round 10` (fifteenth session) continues round 8's weights at lr 3e-4 with most of describe's weight on scenes of
four shapes (ROUND10_MIX's `describe_crowded`, synth.tasks.TRAINING_VARIANTS): round 8 missed 11 of 59 typed
four-shape descriptions but 2 of 141 smaller ones, most often by swapping two neighbours of one colour. Its
talker's inputs are refitted (`adapters --round 10`) and the talker is left as it is. Measured, not shipped: a
talker pass on a fresh recording, `record --round 10 --keep heard` (the shipped model speaking 2,000 training
answers, keeping the 1,394 right ones pocketsphinx heard word for word), then `talker --round 10 --minutes 8 --lr
1e-4` (1,300 steps): its own greedy codes were learnt by heart (loss 0.0003) and the speech got worse (16.3%
against 14.5% on 300 answers), as round 4's 20-minute pass did. Also measured, not shipped (commit 45ce5fb,
reverted): every second batch fresh digit strings on the recovered VQ's espeak-ng codes, 12 minutes: 18.4%, and
digits no better (66.5% against 62.6%).
`--round 11` (sixteenth session, talker only, e.g. `--work runs/cont11v --minutes 78 --threads 2`) grows the talker
from 2 to 4 layers (train/grow.deepen_talker_part, new layers as exact no-ops) and teaches it again from espeak-ng:
fresh training answers coded by the recovered VQ, every codebook a target, digit strings weighted (ROUND11_VQ_MIX),
lr 5e-4. Why: round 10's talker said the first two digits of a string right and then drifted, whatever the
length (0 of 39 strings of three or more digits exact at seed 99, ~20-28 frames for any length), while a digit
string it was taught on (VQ codes, teacher-forced) came out 99% right code by code. `--targets recorded` is the
variant measured first (3e-4): round 10's heard recording with every second batch fresh VQ answers whose
codebook-0 codes only are targets (TalkerStage.vq_residuals false; the recovered VQ's residual codes are far from
the talker's own, 21-42% teacher-forced, against 51-73% for codebook 0). After 20 minutes it spoke worse (18.7%
on 300 answers, digits 65.2%, describe 38.1%) and still 0 of 39 long digit strings exact, so it was stopped:
its inputs mixed two voices' codes. The pure-VQ run (12,432 steps, 97 minutes), shipped: 22.7% after 20 minutes
(digits 48.4%), 14.7% after 45 (digits 38.1%), and at the end 10.7% against round 10's 14.5% on the same 300
answers (digits 21.3%, 27 of the 60 strings at seed 99 exact against 6; sentences 21.0% against 12.9%).

The thinker's task mix weights the tasks the shipped model was weakest at (shape_of_color, describe, exists,
direction, spoken questions, transcription); fresh data seeds so no example repeats the first run's.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from omnistream.checkpoint import load_checkpoint
from omnistream.inputs import Processor
from omnistream.train.grow import deepen_assets, deepen_talker_part, deepen_thinker_part
from omnistream.train.loop import TrainConfig
from omnistream.train.parts import COMPONENTS, VQ_FILE, fresh_model, save_part, training_summary
from omnistream.train.talker_adapters import FIT_STEPS, refit_talker_inputs
from omnistream.synth import speak_answer
from omnistream.train.talker_codes import HeardRightAnswer, load_recording, record_codes, right_answer
from omnistream.train.talker_stage import TALKER_MIX, TalkerStage, run_talker_stage
from omnistream.train.thinker_stage import ThinkerStage, run_thinker_stage
from omnistream.train.vq_recovery import recover_vq

logger = logging.getLogger(__name__)
ASSETS = "omnistream/assets/builtin"

CONTINUE_MIX = {"color": 1.0, "count": 1.0, "shape_of_color": 1.5, "exists": 1.3, "describe": 1.6,
                "direction": 0.8, "moving_color": 0.2, "transcribe_digits": 1.0, "transcribe_sentence": 0.8}
ROUND3_MIX = {"color": 0.4, "count": 1.5, "shape_of_color": 0.5, "exists": 1.8, "describe": 1.6,
              "direction": 1.0, "moving_color": 0.2, "transcribe_digits": 1.0, "transcribe_sentence": 0.9}
ROUND5_MIX = {"color": 0.3, "count": 1.6, "shape_of_color": 0.4, "exists": 2.2, "describe": 2.0,
              "direction": 1.2, "moving_color": 0.2, "transcribe_digits": 0.8, "transcribe_sentence": 0.7}
ROUND7_MIX = {"color": 0.3, "count": 1.2, "shape_of_color": 0.4, "exists": 1.0, "describe": 3.0,
              "direction": 1.6, "moving_color": 0.2, "transcribe_digits": 0.6, "transcribe_sentence": 0.5}
ROUND8_MIX = {"color": 0.3, "count": 1.4, "shape_of_color": 0.4, "exists": 0.8, "describe": 4.0,
              "direction": 2.0, "moving_color": 0.2, "transcribe_digits": 0.5, "transcribe_sentence": 0.4}
ROUND9_MIX = {**ROUND8_MIX, "count": 1.2, "describe": 5.0, "direction": 1.0}
# round 10: most of describe's weight on scenes of four shapes (synth.tasks.TRAINING_VARIANTS), its misses' home
ROUND10_MIX = {**ROUND8_MIX, "describe": 1.5, "describe_crowded": 3.0, "direction": 1.5}
ROUND3_LAYERS = 4
# round 11: the talker grown from 2 to 4 layers and retaught on the VQ's codes of fresh espeak-ng answers, weighted
# to the digit strings whose words the 2-layer talker lost after the second
ROUND11_TALKER_LAYERS = 4
ROUND11_VQ_MIX = {**TALKER_MIX, "transcribe_digits": 3.0, "transcribe_sentence": 1.2}
ROUND2_MIX = {"color": 0.6, "count": 1.2, "shape_of_color": 0.6, "exists": 1.4, "describe": 1.6,
              "direction": 1.0, "moving_color": 0.2, "transcribe_digits": 1.2, "transcribe_sentence": 1.0}
STAGE_NOTES = {
    "thinker_cont": "continued from the shipped weights; mix weighted to the weak tasks, 60% spoken image questions",
    "talker_cont": "continued from the shipped weights against the continuing thinker (re-read every 50 steps)",
    "thinker_cont2": "round 2: fresh images under every spoken question (200 clips per question, speed 0.9-1.1)",
    "talker_cont2": "round 2: against the round-2 thinker (re-read every 50 steps)",
    "thinker_cont3": "round 3: language model grown from 2 to 4 layers (new layers start as no-ops), round 2's data",
    "talker_cont3": "round 3: against the round-3 thinker (still reading its layer-2 hidden state)",
    "thinker_cont4": "round 4: round 3's data, spoken questions pulled towards their typed twins' states",
    "talker_cont4": "round 4: on the codes round 3 spoke for its right answers (recorded), against the round-4 "
                    "thinker",
    "talker_adapters": "the talker's text and hidden projections refitted to the continued thinker "
                       "(train/talker_adapters.py); metrics: relative error of its inputs before (drift) and after",
    "thinker_cont5": "round 5: round 4's typed twins, a mix weighted to exists, count and describe, lr 7e-4",
    "talker_adapters5": "round 5: the talker's input projections refitted to the round-5 thinker",
    "talker_cont5": "round 5: on the codes round 4 spoke for its right answers (recorded), against the round-5 "
                    "thinker",
    "thinker_cont6": "round 6: spoken questions written down in a thinking span before the answer, round 5's mix",
    "talker_adapters6": "round 6: the talker's input projections refitted to the round-6 thinker",
    "talker_cont6": "round 6: on the codes round 4 spoke for its right answers (recorded), against the round-6 "
                    "thinker",
    "thinker_cont7": "round 7: round 6 again at lr 5e-4, a mix weighted to describe and direction",
    "talker_adapters7": "round 7: the talker's input projections refitted to the round-7 thinker",
    "talker_cont7": "round 7: on the codes round 4 spoke for its right answers (round 5's recording), against the "
                    "round-7 thinker",
    "thinker_cont8": "round 8: round 7 again at lr 4e-4, a mix weighted further to describe and direction",
    "talker_adapters8": "round 8: the talker's input projections refitted to the round-8 thinker",
    "talker_cont8": "round 8: on the codes round 4 spoke for its right answers (round 5's recording), against the "
                    "round-8 thinker",
    "thinker_cont9": "round 9: round 8 again at lr 3e-4, a mix weighted further to describe",
    "talker_adapters9": "round 9: the talker's input projections refitted to the round-9 thinker",
    "talker_cont9": "round 9: on the codes round 4 spoke for its right answers (round 5's recording), against the "
                    "round-9 thinker",
    "thinker_cont10": "round 10: round 8 again at lr 3e-4, describe weighted to scenes of four shapes",
    "talker_adapters10": "round 10: the talker's input projections refitted to the round-10 thinker",
    "talker_cont10": "round 10: on the codes the shipped model spoke for right answers pocketsphinx heard word for "
                     "word, against the round-10 thinker",
    "talker_cont11": "round 11: talker grown from 2 to 4 layers, retaught on the recovered VQ's codes of fresh "
                     "espeak-ng answers (digit strings weighted), against the round-10 thinker",
}
ROUND2_NOTE = ("Round 2 (`--round 2`, work folder runs/cont2) continued from the round-1 weights the same way "
               "(thinker lr 1e-3, talker 5e-4, cosine), with every spoken question over a fresh image (a bank of 200 "
               "speech clips per question text, speed-perturbed 0.9-1.1 with fresh noise at each use) and fresh "
               "transcription speech, instead of a cycled pool of 3000 (image, speech) pairs.")
CONTINUE_NOTE = ("The *_cont stages continued from the shipped weights with a lower learning rate (thinker 1e-3, talker "
                 "5e-4, 50 warmup steps, cosine decay) as two single-threaded processes side by side "
                 "(`omnistream train recipes/continue.py thinker|talker`); their steps and minutes add to the rows above.")
ROUND3_NOTE = ("Round 3 (`--round 3`, runs/cont3) grew the thinker's language model from 2 to 4 decoder layers, the new "
               "layers appended with their attention and expert output projections at zero so the grown model started "
               "with round 2's exact outputs, then trained as round 2 with a mix weighted to exists, count and describe "
               "and, from step 2500, a per-example loss (every answer weighs the same, so one-token yes/no and count "
               "answers are not drowned by long descriptions; thinker_cont3's logged loss is that mean). The talker "
               "still reads the thinker's layer-2 hidden state.")
ROUND4_NOTE = ("Round 4 (`--round 4`, runs/cont4) continued from round 3's weights with round 3's data and a "
               "typed-twin consistency (weight 1.0): every spoken question's middle-layer and last-layer states at "
               "the answer were pulled towards those of the same question typed, since spoken exists and filtered "
               "count questions, whose answers commit before repeating what was asked, were learnt far worse than "
               "typed ones.")
ADAPTERS_NOTE = ("Round 4's talker could not be continued on VQ codes (the VQ the shipped codes came from was lost). "
                 "Its text and hidden projections were first refitted so that the round-4 thinker's token embeddings "
                 "and media states reach it as round 3's did (`recipes/continue.py adapters`: least squares, then Adam "
                 "on the projections' outputs; talker_adapters' metrics are the relative errors before and after); "
                 "then talker_cont4 trained it on the codes the round-3 model itself spoke for the training answers it "
                 "got right (`recipes/continue.py record`, greedy, 1,848 of 2,000 kept), against the round-4 thinker.")
ROUND5_NOTE = ("Round 5 (`--round 5`, runs/cont5) continued from round 4's weights the same way (typed twins, "
               "lr 7e-4 on the clock) with a mix weighted further to exists, count and describe, then refitted the "
               "talker's inputs (talker_adapters5) and trained it on the codes the round-4 model spoke for 2,000 "
               "fresh training answers (talker_cont5).")
ROUND6_NOTE = ("Round 6 (`--round 6`, runs/cont6) continued from round 4's weights with round 5's mix and lr but "
               "no twins: each spoken image or video question's target is the question as heard, in a thinking span "
               "('<think>is there a red circle</think>Yes.'), then the answer. The talker's inputs were refitted "
               "(talker_adapters6) and it was trained on the codes the round-4 model spoke for 2,000 training answers "
               "(round 5's recording, 1,877 kept; talker_cont6); it never hears the thinking span.")
ROUND7_NOTE = ("Round 7 (`--round 7`, runs/cont7) continued round 6's weights for 35 minutes at lr 5e-4 with a mix "
               "weighted to describe (3.0) and direction (1.6), then refitted the talker's inputs (talker_adapters7) "
               "and trained it on round 5's recording again (talker_cont7).")
ROUND8_NOTE = ("Round 8 (`--round 8`, runs/cont8) continued round 7's weights for 45 minutes at lr 4e-4 with a mix "
               "weighted further to describe (4.0) and direction (2.0), refitted the talker's inputs "
               "(talker_adapters8) and trained it on round 5's recording again (talker_cont8). The rvq.safetensors "
               "beside the weights is not the codec's own VQ (lost) but one read back from Code2Wav "
               "(`recipes/continue.py vq`, train/vq_recovery.py); a talker taught from espeak-ng through it spoke "
               "worse than this one (22.7% against 14.9% intelligibility WER on 300 answers).")
ROUND10_NOTE = ("Round 10 (`--round 10`, runs/cont10) continued round 8's weights for 55 minutes at lr 3e-4 with "
                "most of describe's weight on scenes of four shapes (describe_crowded 3.0, describe 1.5, direction "
                "1.5), then refitted the talker's input projections (talker_adapters10). The talker itself is round "
                "8's: a pass on a recording kept to the answers pocketsphinx heard word for word (1,394 of 2,000) "
                "made its speech worse (16.3% against 14.5% intelligibility WER on 300 answers), so it was not "
                "shipped.")
ROUND11_NOTE = ("Round 11 (`--round 11`, runs/cont11v) grew the talker from 2 to 4 decoder layers (train/grow.py: the "
                "new layers' attention and expert output projections at zero, so it started as round 8's talker) and "
                "taught it again from espeak-ng: fresh training answers spoken by espeak-ng in the two output voices "
                "and coded by the recovered VQ, all four codebooks targets, digit strings weighted 3.0 "
                "(ROUND11_VQ_MIX), lr 5e-4 on the clock, against the round-10 thinker.")
ROUND_NOTES = ((CONTINUE_NOTE, {"thinker_cont", "talker_cont"}), (ROUND2_NOTE, {"thinker_cont2", "talker_cont2"}),
               (ROUND3_NOTE, {"thinker_cont3", "talker_cont3"}), (ROUND4_NOTE, {"thinker_cont4", "talker_cont4"}),
               (ADAPTERS_NOTE, {"talker_adapters"}), (ROUND5_NOTE, {"thinker_cont5", "talker_cont5"}),
               (ROUND6_NOTE, {"thinker_cont6", "talker_cont6"}), (ROUND7_NOTE, {"thinker_cont7", "talker_cont7"}),
               (ROUND8_NOTE, {"thinker_cont8", "talker_cont8"}),
               (ROUND10_NOTE, {"thinker_cont10", "talker_adapters10"}), (ROUND11_NOTE, {"talker_cont11"}))
TWIN_WEIGHT = 1.0
ADAPTERS_FILE = "talker_adapters.json"     # the refit's row for training.json, written by `adapters`
RECORDING = "talker_codes"      # `record`: the checkpoint's own spoken answers, the talker's targets from round 4 on
VQ_REFERENCE_ANSWERS = 300      # `vq`: espeak-ng answers whose features set the recovered VQ's normalisation


def seed_work(assets: str, work: str) -> None:
    """Write the shipped checkpoint's parts into `work` (only those not already there), and its VQ if it has one."""
    vq = Path(assets) / VQ_FILE
    if vq.is_file() and not (Path(work) / VQ_FILE).is_file():
        Path(work).mkdir(parents=True, exist_ok=True)
        shutil.copy2(vq, Path(work) / VQ_FILE)
    missing = [n for n in COMPONENTS if not (Path(work) / f"{n}.safetensors").is_file()]
    if not missing:
        return
    model = fresh_model(assets)
    load_checkpoint(model, assets, dtype=torch.float32)
    for name in missing:
        save_part(work, name, getattr(model, name))
    logger.info("seeded %s with the shipped %s", work, missing)


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="omnistream train recipes/continue.py")
    parser.add_argument("part", choices=("thinker", "talker", "adapters", "record", "vq", "finish"))
    parser.add_argument("--work", default="runs/cont")
    parser.add_argument("--assets", default=ASSETS)
    parser.add_argument("--out", default=ASSETS)
    parser.add_argument("--steps", type=int, default=0, help="0: 5000 (thinker) / 4000 (talker)")
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--lr", type=float, default=0.0,
                        help="0: 1e-3 (thinker; 7e-4 in rounds 5-6, 5e-4 in 7, 4e-4 in 8, 3e-4 in 9-10) / "
                             "5e-4 (talker)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-seed", type=int, default=0,
                        help="thinker data seed (0: 1 + 10 x round); a new one gives fresh examples")
    parser.add_argument("--count", type=int, default=2000,
                        help="record: training examples the checkpoint speaks (a multiple of 100)")
    parser.add_argument("--keep", choices=("right", "heard"), default="right",
                        help="record: keep every right answer, or only those the recogniser also hears word for word")
    parser.add_argument("--vq-every", type=int, default=0,
                        help="talker on a recording: every n-th batch is fresh --vq-tasks examples on the VQ's "
                             "codes of espeak-ng speech (0: none)")
    parser.add_argument("--vq-tasks", default="",
                        help="comma-separated tasks for --vq-every (default: transcribe_digits; round 11: ROUND11_VQ_MIX)")
    parser.add_argument("--prompts", type=int, default=150,
                        help="adapters: example prompts whose media states the hidden projection is fitted on")
    parser.add_argument("--twin-weight", type=float, default=TWIN_WEIGHT,
                        help="rounds 4 and 5: weight of the typed-twin consistency in the thinker's loss")
    parser.add_argument("--targets", choices=("vq", "recorded"), default="",
                        help="talker targets: the VQ's codes of espeak-ng speech (rounds 1-3) or the recording's "
                             "codes (from round 4)")
    parser.add_argument("--round", type=int, default=1, choices=tuple(range(1, 12)),
                        help="1: the second session's continuation; 2: the third's; 3: the fourth's; 4: the tenth's; "
                             "5: the twelfth's; 6 and 7: the thirteenth's; 8 and 9: the fourteenth's; "
                             "10: the fifteenth's; 11: the sixteenth's, talker only (see the docstring)")
    args = parser.parse_args(argv)
    if args.part == "finish":
        finish(args.assets, args.work, args.out)
        return
    seed_work(args.assets, args.work)
    assets = args.assets
    if args.round == 3:
        assets = str(model_assets(args.work, args.assets, thinker_layers=ROUND3_LAYERS))
        if deepen_thinker_part(args.work, assets):
            logger.info("deepened the thinker in %s to %d layers", args.work, ROUND3_LAYERS)
    if args.round == 11:
        if args.part in ("thinker", "adapters"):
            raise SystemExit(f"{args.part}: round 11 trains only the talker (against the shipped thinker)")
        if args.part == "talker":
            assets = str(model_assets(args.work, args.assets, talker_layers=ROUND11_TALKER_LAYERS))
            if deepen_talker_part(args.work, assets):
                logger.info("deepened the talker in %s to %d layers", args.work, ROUND11_TALKER_LAYERS)
    suffix = "" if args.round == 1 else str(args.round)
    if args.part == "adapters":
        name = "talker_adapters" if args.round <= 4 else f"talker_adapters{args.round}"   # round 4's kept its name
        refit_adapters(args.assets, assets, args.work, args.prompts, name)
    elif args.part == "record":
        kept = record_codes(args.assets, Path(args.work) / RECORDING, start=0, count=args.count,
                            seed=1 + 10 * args.round, mix=TALKER_MIX, spoken_fraction=0.3,
                            keep=HeardRightAnswer() if args.keep == "heard" else right_answer)
        logger.info("recorded %d new answers of %s into %s", kept, args.assets, Path(args.work) / RECORDING)
    elif args.part == "vq":
        recover_work_vq(assets, args.work)
    elif args.part == "thinker":
        fresh_data = args.round >= 2
        mix = {1: CONTINUE_MIX, 2: ROUND2_MIX, 3: ROUND3_MIX, 4: ROUND3_MIX, 5: ROUND5_MIX, 6: ROUND5_MIX,
               7: ROUND7_MIX, 8: ROUND8_MIX, 9: ROUND9_MIX, 10: ROUND10_MIX}[args.round]
        think = args.round >= 6
        lr = args.lr or {5: 7e-4, 6: 7e-4, 7: 5e-4, 8: 4e-4, 9: 3e-4, 10: 3e-4}.get(args.round, 1e-3)
        run_thinker_stage(ThinkerStage(assets, args.work, TrainConfig(
            steps=args.steps or 5000, lr=lr, warmup=50, ckpt_every=100,
            out_dir=f"{args.work}/thinker_cont{suffix}", max_minutes=args.minutes, time_schedule=args.round >= 4),
            task_mix=mix, spoken_fraction=0.65 if args.round >= 3 else 0.6,
            data_seed=args.data_seed or (1 + 10 * args.round), video_every=8, spoken_pool=3000,
            question_clips=200 if fresh_data else 0, loss_per_example=args.round >= 3,
            twin_weight=args.twin_weight if 4 <= args.round <= 5 else 0.0, think_spoken=think), threads=args.threads)
    else:
        targets = args.targets or ("recorded" if 4 <= args.round <= 10 else "vq")
        round11 = args.round == 11
        mixed11 = round11 and targets == "recorded"       # round 11's first variant: recording + VQ codebook 0
        vq_every = args.vq_every or (2 if mixed11 else 0)
        vq_mix = ({t: 1.0 for t in args.vq_tasks.split(",")} if args.vq_tasks else
                  ROUND11_VQ_MIX if round11 else {"transcribe_digits": 1.0}) if vq_every else {}
        if (targets == "vq" or vq_every) and not (Path(args.work) / VQ_FILE).is_file():
            raise SystemExit(f"talker: no {VQ_FILE} in {args.work} for the VQ's targets; run `vq` first")
        run_talker_stage(TalkerStage(assets, args.work, TrainConfig(
            steps=args.steps or 4000, lr=args.lr or (3e-4 if mixed11 else 5e-4), warmup=50, ckpt_every=100,
            out_dir=f"{args.work}/talker_cont{suffix}", max_minutes=args.minutes, time_schedule=args.round >= 4),
            batch_size=8, seed=7 + 10 * (args.round - 1),
            task_mix=ROUND11_VQ_MIX if round11 and targets == "vq" else TALKER_MIX,
            recorded=str(Path(args.work) / RECORDING) if targets == "recorded" else "",
            vq_every=vq_every, vq_mix=vq_mix, vq_residuals=not round11), threads=args.threads)


def refit_adapters(checkpoint: str, assets: str, work: str, prompts: int, name: str = "talker_adapters") -> None:
    """Refit the work talker's input projections to the work thinker, against the checkpoint's own pair.

    Only for a talker left as the checkpoint has it (besides those projections): a talker trained on learnt
    the new thinker's states itself, and refitting its inputs to the old thinker's would undo that."""
    start = time.time()
    old = fresh_model(checkpoint)
    load_checkpoint(old, checkpoint, dtype=torch.float32)
    new = fresh_model(assets, work)
    kept = ("talker.model.", "talker.codec_head.", "talker.code_predictor.")
    old_state, new_state = old.state_dict(), new.state_dict()
    changed = [k for k in old_state if k.startswith(kept) and not torch.equal(old_state[k], new_state[k])]
    if changed:
        raise SystemExit(f"adapters: the talker in {work} was trained on ({len(changed)} tensors differ from "
                         f"{checkpoint}, e.g. {changed[0]}); refit only a talker left as the checkpoint has it")
    fits = refit_talker_inputs(old.eval(), new.eval(), Processor.from_pretrained(checkpoint), prompts=prompts)
    save_part(work, "talker", new.talker)
    row = {"name": name, "steps": FIT_STEPS, "minutes": (time.time() - start) / 60,
           "loss": max(f.residual for f in fits), "notes": STAGE_NOTES[name],
           "metrics": {f"{f.name}_{k}": round(getattr(f, k), 4) for f in fits for k in ("drift", "residual")}}
    (Path(work) / ADAPTERS_FILE).write_text(json.dumps(row, indent=1) + "\n")
    logger.info("refitted the talker's input projections in %s: %s", work, row["metrics"])


def recover_work_vq(assets: str, work: str) -> None:
    """Write `<work>/rvq.safetensors`: the VQ behind the work Code2Wav's codes, read back from the recording
    (train/vq_recovery.py). A VQ already there (the codec's own, or one read back before) is kept."""
    path = Path(work) / VQ_FILE
    if path.is_file():
        logger.info("vq: %s already has its VQ; kept", work)
        return
    records, _, _ = load_recording(Path(work) / RECORDING)
    code2wav = fresh_model(assets, work).code2wav.eval()
    reference = [speak_answer(r.gold, r.voice) for r in records[:VQ_REFERENCE_ANSWERS]]
    vq, agreement = recover_vq(code2wav, (r.codes for r in records), reference)
    vq.save(path)
    logger.info("vq: recovered from %d recorded answers into %s (codes given back by level: %s)", len(records),
                path, ", ".join(f"{a:.0%}" for a in agreement))


def model_assets(work: str, assets: str, thinker_layers: int = 0, talker_layers: int = 0) -> Path:
    """The shipped config with a deeper thinker (round 3) or talker (round 11) in `<work>/assets`, written on
    first use."""
    deep = Path(work) / "assets"
    if not (deep / "config.json").is_file():
        deepen_assets(assets, deep, thinker_layers=thinker_layers, talker_layers=talker_layers)
    return deep


def finish(assets: str, work: str, out: str) -> None:
    """Ship the continued parts into `out` and append the continuation to its training.json.

    A round that changed the model's shape left its config in `<work>/assets`; it ships with the weights."""
    from omnistream.train.parts import assemble

    previous = json.loads((Path(assets) / "training.json").read_text())
    shape = Path(work) / "assets"
    assemble(shape if (shape / "config.json").is_file() else assets, work, out)
    rows = training_summary(work, STAGE_NOTES)["stages"]
    if (Path(work) / ADAPTERS_FILE).is_file():          # the refit came before the talker trained on
        talker = [i for i, row in enumerate(rows) if row["name"].startswith("talker_cont")]
        rows.insert(talker[0] if talker else len(rows), json.loads((Path(work) / ADAPTERS_FILE).read_text()))
    fresh = {row["name"] for row in rows}                 # a later round keeps the earlier rounds' rows
    previous["stages"] = [s for s in previous["stages"] if s["name"] not in fresh] + rows
    notes = previous.get("notes", "")
    for note, stages in ROUND_NOTES:                      # a round's note joins with its first shipped row
        if fresh & stages and note not in notes:
            notes = f"{notes} {note}".strip()
    previous["notes"] = notes
    Path(out, "training.json").write_text(json.dumps(previous, indent=1) + "\n")
