from thoracic.cli.main import run

run()
