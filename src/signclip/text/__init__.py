"""Text side: prompts carrying the spoken and signed language."""
from signclip.text.prompts import make_prompt, make_prompts

__all__ = ["make_prompt", "make_prompts"]
