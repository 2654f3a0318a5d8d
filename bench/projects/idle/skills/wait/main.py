import time


def run(inputs: dict) -> dict:
    time.sleep(inputs.get("seconds", 3600))
    return {}
