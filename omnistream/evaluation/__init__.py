"""`omnistream eval`: accuracy per task on a fresh test set, transcription WER, intelligibility of the model's
own speech (pocketsphinx with the world's grammar), real-time factor and time to first audio."""
from omnistream.evaluation.metrics import word_errors, wer
from omnistream.evaluation.runner import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate", "wer", "word_errors"]
