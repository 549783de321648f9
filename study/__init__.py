"""The efficiency study (`brevity study`, `brevity demo`): data, a warm start, the control and every method trained
with `rl`, every model evaluated with `eval`, one table. It sits above both packages (rl -> {rollouts, rewards},
eval -> {rollouts, rewards}, study -> all of them; tests/test_layering.py checks it), so neither imports the other."""
