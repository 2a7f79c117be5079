from qrdoctor.cli import run

run()
