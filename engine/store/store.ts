// The Store: the typed repositories through which the engine reads and
// writes its database — store.models, store.runs, store.metrics,
// store.checkpoints, store.chats, store.messages, store.reports,
// store.datasets, one file each. SQL is spoken only in engine/store.
import type Database from 'better-sqlite3';
import { CheckpointsRepo } from './checkpoints';
import { ChatsRepo } from './chats';
import { DatasetsRepo } from './datasets';
import type { HomeLayout } from './home';
import { MessagesRepo } from './messages';
import { MetricsRepo } from './metrics';
import { ModelsRepo } from './models';
import type { ReconcileReport } from './reconcile';
import { ReportsRepo } from './reports';
import { RunsRepo } from './runs';
import { Sql } from './sql';

export class Store {
  readonly models: ModelsRepo;
  readonly datasets: DatasetsRepo;
  readonly runs: RunsRepo;
  readonly metrics: MetricsRepo;
  readonly checkpoints: CheckpointsRepo;
  readonly chats: ChatsRepo;
  readonly messages: MessagesRepo;
  readonly reports: ReportsRepo;
  /** What reconciling found when this store was opened for writing (set by openStore); null for readers. */
  reconcileReport: ReconcileReport | null = null;
  private readonly sql: Sql;

  /** Use openStore (open.ts), which checks, migrates and reconciles the database first. */
  constructor(
    db: Database.Database,
    readonly layout: HomeLayout,
  ) {
    this.sql = new Sql(db, layout);
    this.models = new ModelsRepo(this.sql);
    this.datasets = new DatasetsRepo(this.sql);
    this.runs = new RunsRepo(this.sql);
    this.metrics = new MetricsRepo(this.sql);
    this.checkpoints = new CheckpointsRepo(this.sql, this.runs);
    this.chats = new ChatsRepo(this.sql);
    this.messages = new MessagesRepo(this.sql);
    this.reports = new ReportsRepo(this.sql);
  }

  get readonly(): boolean {
    return this.sql.db.readonly;
  }

  /** SQLite's full consistency check: ['ok'] for a sound database, otherwise the problems found. */
  integrityCheck(): string[] {
    return this.sql.q('PRAGMA integrity_check').pluck(true).all() as string[];
  }

  close(): void {
    this.sql.db.close();
  }
}
