/**
 * Runs before every test of every file (vitest `setupFiles`): each open stack's fake model is
 * reset, so that no test reads another's requests, script or quota.
 */
import { beforeEach } from "vitest";
import { resetFakeModels } from "./fake-registry";

beforeEach(() => resetFakeModels());
