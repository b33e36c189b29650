import torch

from degaml.memory import peak_memory_mb, process_peak_mb, reset_peak_memory


def test_a_reset_starts_a_new_window_and_the_process_peak_keeps_the_old_one():
    cpu = torch.device("cpu")
    reset_peak_memory(cpu)
    big = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
    with_big = peak_memory_mb(cpu)["peak_rss_mb"]
    del big
    reset_peak_memory(cpu)
    assert peak_memory_mb(cpu)["peak_rss_mb"] < with_big - 32
    # the kernel updates its high-water mark lazily, so a few pages may be missing; 64 MiB may not
    assert process_peak_mb() > with_big - 8
