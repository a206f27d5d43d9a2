"""Fine-tuning datasets built from the WVS seeds, their augmented samples and the survey's answers.

`render_wvs_prompt` is the one place the training prompt of a WVS item is made, so that training and
evaluation ask the identical question.
"""

from builders.prompt import render_wvs_prompt

__all__ = ["render_wvs_prompt"]
