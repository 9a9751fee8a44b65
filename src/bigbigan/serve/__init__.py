"""`bigbigan serve`: the demo page (docs/serve.md); only app.py imports Gradio."""
