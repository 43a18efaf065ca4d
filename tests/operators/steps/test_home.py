"""The home key: what a thread noted last, per thread, else "0"."""

import threading

from operators.steps import home


def test_each_thread_gets_back_the_key_it_noted_last():
    home._keys.clear()
    seen: dict[str, str] = {}
    both = threading.Barrier(2)  # both alive at once: distinct thread ids

    def run(name: str) -> None:
        both.wait()
        seen[f"{name} before"] = home.here()
        home.note(f"{name}-a")
        both.wait()
        home.note(f"{name}-b")
        seen[name] = home.here()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"x before": "0", "x": "x-b", "y before": "0", "y": "y-b"}
