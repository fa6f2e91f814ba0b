from focalbench.cli import app

app(prog_name="focalbench")
