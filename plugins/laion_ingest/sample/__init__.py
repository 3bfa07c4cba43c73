"""The generated sample: LAION-format mirrors (mirror.py), the HTTP server that serves them with
scripted faults (server.py) and a tiny CLIP of the real model's shape (clip_model.py). They stand in
for LAION's servers and OpenAI's model, which cannot be downloaded where the tests, the quickstart
and `make ui` run; the pipeline itself never imports them."""
