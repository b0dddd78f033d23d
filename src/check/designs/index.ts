/**
 * The designs `tsvisor check doorbell --design NAME` can load: the production one, and demo
 * designs that reproduce known bugs (the seed's pre-fix design first).
 */
import type { DoorbellDesign } from "../doorbell.js";
import {
  checkThenSleepDesign,
  decideThenPublishDesign,
  disarmOnRingDesign,
  noRefuseLoadDesign,
  notifyNotStickyDesign,
  snapshotAfterCheckDesign,
  splitWfiPutDesign,
} from "./demo-bugs.js";
import { fixedDesign } from "./fixed.js";
import { preFixDesign } from "./pre-fix.js";

export const DESIGNS: readonly DoorbellDesign[] = [
  fixedDesign,
  preFixDesign,
  checkThenSleepDesign,
  notifyNotStickyDesign,
  noRefuseLoadDesign,
  splitWfiPutDesign,
  decideThenPublishDesign,
  snapshotAfterCheckDesign,
  disarmOnRingDesign,
];

export function findDesign(name: string): DoorbellDesign | undefined {
  return DESIGNS.find((d) => d.name === name);
}
