"""Models named by role: `*Request` in, `*Public` out, `*Job` on queues, `*Record` stored."""
