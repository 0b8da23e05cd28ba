"""Generic evaluation: retrieval, zero-shot and ranking metrics (R@K, mAP, mINP, H@K, MRR),
separation metrics (SI-SDR, SDRi, Fréchet distance), and the evaluators built on them.

An evaluator is registered in ``xmodal.core.registry.EVALUATORS`` as a factory: it takes the
spec kwargs and returns ``run(ctx) -> {metric: value}`` where ``ctx`` is an ``EvalContext``
(``xmodal/core/eval_context.py``). A system's own evaluators live in its project folder.
"""
