"""The lab: what the project uses to build, measure and study its capabilities, kept out of the installed package.

    fixtures/     models the project builds or trains itself (the real SmolLM2 model, the toy causal-LM pair, the toy
                  diffusion model), cached under ~/.cache/optimum-dynexec
    benchmark/    the harnesses behind `optimum-cli dynexec benchmark` and docs/benchmarks.md, and their data
                  (prompt sets, labelled text sets, the shape judge)
    experiments/  one-off measurements quoted in docs/benchmarks.md and docs/lab-notebook.md
    demo.py       `make demo`

Run from a checkout's root (`python -m lab.demo`, `python -m lab.experiments.<name>`); the library never imports it.
"""
