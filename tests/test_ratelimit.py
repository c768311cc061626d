from include.nps.core.rate_limits import SlidingWindowLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_make_limit_requests_per_window_and_learns_when_to_come_back():
    clock = Clock()
    limit = SlidingWindowLimit(2, 60, clock)
    assert limit.hit("a") is None and limit.hit("a") is None
    clock.now += 10
    assert limit.hit("a") == 50  # the first request leaves the window in 50 s
    assert limit.hit("b") is None  # keys are counted apart
    clock.now += 50
    assert limit.hit("a") is None


def test_a_zero_limit_is_no_limit_and_idle_keys_are_forgotten():
    assert all(SlidingWindowLimit(0, 60).hit("a") is None for _ in range(100))
    clock = Clock()
    limit = SlidingWindowLimit(1, 60, clock)
    for key in range(1000):
        limit.hit(str(key))
    clock.now += 61
    limit.hit("new")
    assert len(limit._hits) == 1
