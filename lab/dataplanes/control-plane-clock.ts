// The clock a lab dataplane's control plane model reads (kube-proxy's time.Now(), in seconds): the
// host's monotonic clock, plus the time the lab lets pass for it at once where a running control
// plane would wait (the periodic sync that deletes stale chains a second or a sync period later).
export class ControlPlaneClock {
  private skippedS = 0;

  now(): number {
    return performance.now() / 1000 + this.skippedS;
  }

  /** Lets `seconds` pass for the control plane without waiting for them. */
  skip(seconds: number): void {
    this.skippedS += seconds;
  }
}
