"""Applications around the job: the CLI, the HTTP gateway, the explainer, the demo,
evaluation and the replay tools. They build on ``flows``, ``models`` and
``operators``; nothing below imports them."""
