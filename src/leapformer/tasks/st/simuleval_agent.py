"""A SimulEval 1.1.4 speech-to-text agent around a ``leapformer st train`` run.

Run it with SimulEval's own entry point (source: one wav path per line;
target: one reference per line)::

    simuleval --agent-class leapformer.tasks.st.simuleval_agent.LeapformerSpeechAgent \\
        --source src.txt --target tgt.txt --output OUT \\
        --run RUN --waitk 5 [--ratio 7] [--encoder incremental|reencode] \\
        --eval-latency-unit spm --eval-latency-spm-model RUN/spm.tgt.model \\
        --source-segment-size 280

The agent writes one target SentencePiece piece per write (SimulEval joins
them and turns ``▁`` into spaces), so the latency unit must be ``spm`` with
the run's target model: SimulEval then counts the reference in the same
pieces. Its policy, features and encoder modes are those of
:class:`~leapformer.models.speech_simul.SpeechSimulAgent` (the built-in
runner, ``leapformer st simul``): each segment SimulEval sends is appended to
the utterance; the agent reads until ``(k + t - 1) * ratio`` encoder states
are available, then writes. Audio must be at the run's 16 kHz.
"""

from __future__ import annotations

import warnings
from argparse import ArgumentParser, Namespace

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydub (imported by simuleval) warns that ffmpeg is missing
    try:
        from simuleval.agents import SpeechToTextAgent
        from simuleval.agents.actions import ReadAction, WriteAction
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the SimulEval agent needs simuleval: "
                          "pip install 'leapformer[speech]'") from err

from leapformer.models.simul import ENCODER_MODES
from leapformer.models.speech_simul import SpeechSimulAgent
from leapformer.tasks.st.data import SAMPLE_RATE, load_st_data
from leapformer.tasks.st.run import load_st_run

__all__ = ["LeapformerSpeechAgent"]


class LeapformerSpeechAgent(SpeechToTextAgent):
    """Wait-k on pre-decision chunks, speech in, target subword pieces out (module docstring)."""

    def __init__(self, args: Namespace):
        model, config = load_st_run(args.run, checkpoint=args.checkpoint, device="cpu")
        data = load_st_data(args.run)
        ratio = config["ratio"] if args.ratio is None else args.ratio
        self.tok = data.tok
        self.sim = SpeechSimulAgent(model, args.waitk, ratio=ratio, encoder=args.encoder,
                                    cmvn=data.cmvn, sample_rate=SAMPLE_RATE,
                                    max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                                    compile_step=not getattr(args, "no_compile_step", False))
        self.sim.warm_up()  # compiled before SimulEval's clock starts
        self.session = None
        self.consumed = 0
        super().__init__(args)

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        parser.add_argument("--run", required=True, help="run folder of 'leapformer st train'")
        parser.add_argument("--waitk", type=int, required=True, help="wait-k lag (reads)")
        parser.add_argument("--ratio", type=int, default=None,
                            help="encoder states per read (default: the run's)")
        parser.add_argument("--encoder", default="incremental", choices=ENCODER_MODES)
        parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
        parser.add_argument("--max-len-a", type=float, default=0.5)
        parser.add_argument("--max-len-b", type=float, default=10)
        parser.add_argument("--no-compile-step", action="store_true",
                            help="eager decoder steps (default: the compiled fused step)")

    def reset(self) -> None:
        super().reset()
        old = getattr(self, "session", None)
        if old is not None:  # an utterance left unfinished: its model mode comes back
            old.close()
        self.session = self.sim.session()
        self.consumed = 0

    def to(self, device: str, *args, **kwargs) -> None:  # noqa: ARG002
        self.sim.model.to(device)

    def policy(self):
        states, s = self.states, self.session
        if states.source_sample_rate and states.source_sample_rate != self.sim.sample_rate:
            raise ValueError(f"audio at {states.source_sample_rate} Hz; the run expects "
                             f"{self.sim.sample_rate} Hz")
        new = states.source[self.consumed:]
        if not s.source_finished and (new or states.source_finished):
            s.push(np.asarray(new, dtype=np.float32), finished=states.source_finished)
            self.consumed = len(states.source)
        if not s.can_write():
            return ReadAction()
        tok = s.write()
        if tok is None:
            return WriteAction("", finished=True)
        return WriteAction(self.tok.id_to_piece(tok), finished=s.done)
