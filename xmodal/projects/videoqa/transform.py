"""Record of ``sprite_videos`` -> a clip and its questions: the ``videoqa`` transform.

    video      uint8   [frames, H, W, 3]   the clip (``xmodal.data.video.clips``)
    flow       float16 [frames, H, W, 2]   Farneback flow of the same frames
    question   int32   [max_questions, question_len]         word ids (``WordTokenizer``)
    candidates int32   [max_questions, 5, answer_len]
    answer     int32   [max_questions]     index of the right candidate
    qtype      int32   [max_questions]     index into ``sprite_questions.QTYPES``; -1: no question
    valid      float32 [max_questions]     1 for a real question, 0 for a padding slot

Evaluation keeps every question of the clip (``max_questions`` slots; the video is encoded
once for all of them) and takes ``eval_clips`` frames (``uniform``: spread over the whole clip).
Training draws a ``train_clips`` clip per record (``random``: a random start, ``stride`` apart)
and ``train_questions`` of its questions (a random subset, in their order): the text and
matching cost grows with the questions, the video's does not, and a clip seen again in another
epoch is asked other questions. The vocabulary
is the training split's words (the dataset's ``vocabulary`` metadata).
"""
from __future__ import annotations

from typing import Any, Mapping

import grain
import numpy as np

from xmodal.core import datasets as sources
from xmodal.core.registry import TRANSFORMS
from xmodal.data.sets.sprite_questions import CANDIDATES, QTYPES
from xmodal.data.sets.sprite_videos import MAX_QUESTIONS
from xmodal.data.tokenizer import WordTokenizer
from xmodal.data.video import clips


class VideoQATransform(grain.transforms.Map):
    def __init__(self, vocabulary_from: str, frames: int = 8, stride: int = 2,
                 train_clips: str = "random", eval_clips: str = "uniform",
                 max_questions: int = MAX_QUESTIONS, question_len: int = 16,
                 answer_len: int = 8,
                 vocab_size: int = 512, train_questions: int = 6, frame_size: int = 96):
        metadata = sources.builder_for(vocabulary_from).info.metadata
        if "vocabulary" not in metadata:
            raise ValueError(f"dataset {vocabulary_from!r} has no 'vocabulary' in its metadata "
                             "(videoqa reads sprite_videos' training words); rebuild it: "
                             f"{sources.rebuild_command(vocabulary_from)}")
        self.tokenizer = WordTokenizer(list(metadata["vocabulary"]), question_len)
        self.answers = WordTokenizer(list(metadata["vocabulary"]), answer_len)
        if self.tokenizer.vocab_size > vocab_size:
            raise ValueError(f"the {len(metadata['vocabulary'])} words of {vocabulary_from!r} "
                             f"need ids up to {self.tokenizer.vocab_size - 1}: raise the spec's "
                             f"vocab_size ({vocab_size}, the model's embedding rows)")
        self.train_sampler = clips.ClipSampler(frames, train_clips, stride)
        self.eval_sampler = clips.ClipSampler(frames, eval_clips, stride)
        self.max_questions = max_questions
        if not 1 <= train_questions <= max_questions:
            raise ValueError(f"videoqa train_questions={train_questions} must lie in "
                             f"1..max_questions={max_questions}")
        self.train_questions = train_questions
        self.frame_size = frame_size
        self.qtypes = QTYPES

    def __repr__(self) -> str:
        return (f"VideoQATransform({self.tokenizer!r}, train {self.train_sampler}, eval "
                f"{self.eval_sampler}, max_questions={self.max_questions})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self._example(record, None)

    def random_map(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict:
        return self._example(record, rng)

    def _example(self, record: Mapping[str, Any], rng) -> dict[str, np.ndarray]:
        video = clips.check_video(record, "video", "masks", "flow")
        if video.shape[1:3] != (self.frame_size, self.frame_size):
            raise ValueError(f"record seed {record.get('seed')}: frames of {video.shape[1]} x "
                             f"{video.shape[2]}, the transform's frame_size is "
                             f"{self.frame_size} (every clip of a batch must match)")
        sampler = self.eval_sampler if rng is None else self.train_sampler
        frames = sampler.indices(len(video), rng)
        out = clips.take_clip(record, frames, flow_field="flow")
        questions = list(record["question"])
        n, q = len(questions), self.max_questions
        candidates = list(record["candidates"])
        answers, types = list(record["answer"]), list(record["qtype"])
        if len(candidates) != CANDIDATES * n or len(record["answer"]) != n \
                or len(record["qtype"]) != n:
            raise ValueError(f"record seed {record.get('seed')}: {n} questions need "
                             f"{CANDIDATES * n} candidates, {n} answers and {n} types; got "
                             f"{len(candidates)}, {len(record['answer'])}, "
                             f"{len(record['qtype'])}")
        if n > q:
            raise ValueError(f"record seed {record.get('seed')} has {n} questions, more than "
                             f"max_questions={q}; raise it")
        if rng is not None:       # training: a random subset of the questions
            q = self.train_questions
            keep = np.sort(rng.permutation(n)[:q])
            questions = [questions[i] for i in keep]
            candidates = [c for i in keep for c in
                          candidates[CANDIDATES * i:CANDIDATES * (i + 1)]]
            answers, types = [answers[i] for i in keep], [types[i] for i in keep]
            n = len(keep)
        question = np.zeros((q, self.tokenizer.max_len), np.int32)
        cands = np.zeros((q, CANDIDATES, self.answers.max_len), np.int32)
        answer = np.zeros(q, np.int32)
        qtype = np.full(q, -1, np.int32)
        valid = np.zeros(q, np.float32)
        if n:
            question[:n] = self.tokenizer.encode_batch(questions)
            cands[:n] = self.answers.encode_batch(candidates).reshape(n, CANDIDATES, -1)
            answer[:n] = np.asarray(answers, np.int32)
            qtype[:n] = np.asarray(types, np.int32)
            valid[:n] = 1.0
        if np.any((answer < 0) | (answer >= CANDIDATES)):
            raise ValueError(f"record seed {record.get('seed')}: answers {answer[:n].tolist()} "
                             f"outside 0..{CANDIDATES - 1}")
        return {"video": out["video"], "flow": out["flow"].astype(np.float16),
                "question": question, "candidates": cands, "answer": answer, "qtype": qtype,
                "valid": valid}


@TRANSFORMS.register("videoqa")
def videoqa(vocabulary_from: str = "sprite_videos", frames: int = 8, stride: int = 2,
            train_clips: str = "random", eval_clips: str = "uniform",
            max_questions: int = MAX_QUESTIONS,
            question_len: int = 16, answer_len: int = 8, vocab_size: int = 512,
            train_questions: int = 6, frame_size: int = 96):
    return VideoQATransform(vocabulary_from, frames, stride, train_clips, eval_clips,
                            max_questions, question_len, answer_len, vocab_size,
                            train_questions, frame_size)
