import type { Logger } from "../../shared/logger.js";
import type { ServerHandle } from "../session/attempt.js";
import { EventHub } from "./event-hub.js";
import type { OpencodeClient } from "./opencode-client.js";
import type { OpencodeServer } from "./opencode-server.js";

/**
 * One event stream per opencode server: when the server (and so its client) is replaced, the
 * next caller gets a fresh hub and the old one is closed.
 */
export class HubPerServer {
  private client: OpencodeClient | undefined;
  private hub: EventHub | undefined;

  constructor(private readonly log: Logger) {}

  current(keeper: { server(): OpencodeServer; client(): OpencodeClient }): ServerHandle {
    const client = keeper.client();
    if (client !== this.client || !this.hub) {
      this.hub?.close();
      this.client = client;
      this.hub = new EventHub(client, this.log).start();
    }
    return { server: keeper.server(), client, hub: this.hub };
  }

  close(): void {
    this.hub?.close();
    this.hub = undefined;
    this.client = undefined;
  }
}
