"""Tasks (DESIGN.md "Tasks"): what the data looks like and what "good" means, behind one interface.

A task loads and checks its data (``load``), trains the embedded tokenizer, tokenises and collates examples, says
which Auto class its models are (``causal``), and evaluates a run (``evaluate_run``) and a stage
(``stage_scores``) with its own metrics. Two members: ``classification`` (class ids; accuracy, macro-F1) and
``causal_lm`` (prompt → response, the loss on response tokens; perplexity, exact match, ROUGE-L). The rest of the
run (plan, stages, trainer, teacher sources, report) asks the task instead of assuming class logits.
"""

from __future__ import annotations


class Task:
    """The interface; ``get(name)`` gives the member."""

    name = ""
    causal = False  # the models are causal LMs (AutoModelForCausalLM) rather than sequence classifiers
    metric = ""  # the headline metric of results.json's task section

    def load(self, data_cfg):
        """The train/eval splits (``data.TaskData``), checked, not tokenised."""
        raise NotImplementedError

    def tokenizer_texts(self, task_data) -> list[str]:
        """The texts the embedded tokenizer is trained on (the training split only)."""
        raise NotImplementedError

    def train_tokenizer(self, texts: list[str], vocab_size: int, out_dir):
        raise NotImplementedError

    def check(self, cfg, task_data, tokenizer) -> None:
        """Plan-time checks that need the tokenizer (ConfigError)."""

    def tokenize(self, task_data, tokenizer, cfg):
        """(train_set, eval_set): tokenised datasets the collator batches."""
        raise NotImplementedError

    def collator(self, tokenizer):
        raise NotImplementedError

    def evaluate_run(self, teacher, student, eval_set, collator, tokenizer, device, cfg) -> dict:
        """results.json's teacher / student / comparison / speed sections."""
        raise NotImplementedError

    def stage_scores(self, model, source, eval_set, collator, tokenizer, device, cfg) -> dict:
        """A stage's model on the eval split when the stage ends (its record's ``eval``)."""
        raise NotImplementedError

    def describe_scores(self, scores: dict) -> str:
        raise NotImplementedError


def get(name: str) -> Task:
    if name == "causal_lm":
        from distillkit.tasks.causal_lm.task import CausalLM

        return CausalLM()
    from distillkit.tasks.classification.task import Classification

    return Classification()
