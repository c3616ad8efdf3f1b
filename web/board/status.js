// The connection indicator. It shows exactly the client library's state (taskflow.js), never a
// guess: live, degraded (SSE or polling), reconnecting (with the time of the next try), offline,
// connecting.

const TRANSPORT_NAMES = { sse: "Server-Sent Events", poll: "long polling", websocket: "WebSocket" };

export class ConnectionIndicator {
  constructor(element) {
    this.element = element;
    this.label = element.querySelector(".connection-label");
    this.ticker = null;
  }

  /** `state` and `info` as taskflow.js reports them in `onState`. */
  show(state, info = {}) {
    clearInterval(this.ticker);
    this.ticker = null;
    this.element.dataset.state = state;
    this.element.dataset.transport = info.transport || "";
    switch (state) {
      case "live":
        this.label.textContent = "Live";
        break;
      case "degraded":
        this.label.textContent = `Degraded: ${TRANSPORT_NAMES[info.transport] || info.transport}`;
        break;
      case "offline":
        this.label.textContent = "Offline";
        break;
      case "reconnecting":
        if (info.tokenExpired) {
          this.label.textContent = "Signed out: the token expired";
        } else if (info.retryAt) {
          // The countdown is for the eye; screen readers hear "Reconnecting" once, not every second.
          this.label.textContent = "Reconnecting";
          const countdown = document.createElement("span");
          countdown.className = "retry";
          countdown.setAttribute("aria-hidden", "true");
          this.label.append(countdown);
          const tick = () => {
            const seconds = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
            countdown.textContent = seconds > 0 ? `: next try in ${seconds} s` : ": trying now";
          };
          tick();
          this.ticker = setInterval(tick, 1000);
        } else {
          this.label.textContent = "Reconnecting…";
        }
        break;
      default:
        this.label.textContent = "Connecting…";
    }
  }
}
