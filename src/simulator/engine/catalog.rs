//! The catalog in an embedded SQLite: msdb (backup history, Agent jobs, maintenance
//! plans) persisted in `msdb.sqlite3` under the root, and the system views (`sys.*`)
//! rebuilt from the instance state before each query. Columns are declared with
//! their T-SQL types (`numeric(25,0)`, `nvarchar(128)`...) so a SELECT's results go
//! out with the TDS types a real server uses.

use std::path::Path;

use rusqlite::{params, Connection};

const MSDB_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS msdb.backupset(
  backup_set_id INTEGER PRIMARY KEY, media_set_id int, name nvarchar(128) COLLATE NOCASE,
  description nvarchar(255), database_name nvarchar(128) COLLATE NOCASE, type char(1) COLLATE NOCASE,
  is_copy_only bit, backup_start_date datetime, backup_finish_date datetime,
  backup_size numeric(20,0), compressed_backup_size numeric(20,0), has_backup_checksums bit,
  is_damaged bit, first_lsn numeric(25,0), last_lsn numeric(25,0), checkpoint_lsn numeric(25,0),
  database_backup_lsn numeric(25,0), differential_base_lsn numeric(25,0),
  differential_base_guid uniqueidentifier, recovery_model nvarchar(60),
  database_guid uniqueidentifier, family_guid uniqueidentifier,
  last_recovery_fork_guid uniqueidentifier, backup_set_uuid uniqueidentifier,
  server_name nvarchar(128), machine_name nvarchar(128), user_name nvarchar(128),
  position int, database_creation_date datetime, compatibility_level tinyint,
  is_snapshot bit, is_password_protected bit);
CREATE TABLE IF NOT EXISTS msdb.backupmediaset(
  media_set_id INTEGER PRIMARY KEY, media_uuid uniqueidentifier, media_family_count tinyint,
  name nvarchar(128), is_compressed bit, is_encrypted bit, software_name nvarchar(128));
CREATE TABLE IF NOT EXISTS msdb.backupmediafamily(
  media_set_id int, family_sequence_number tinyint, media_family_id uniqueidentifier,
  media_count int, logical_device_name nvarchar(128), physical_device_name nvarchar(260) COLLATE NOCASE,
  device_type tinyint, physical_block_size int, mirror tinyint);
CREATE TABLE IF NOT EXISTS msdb.restorehistory(
  restore_history_id INTEGER PRIMARY KEY, restore_date datetime,
  destination_database_name nvarchar(128) COLLATE NOCASE, user_name nvarchar(128),
  backup_set_id int, restore_type char(1), replace bit, recovery bit, stop_at datetime);
CREATE TABLE IF NOT EXISTS msdb.sysjobs(
  job_id uniqueidentifier, originating_server_id int, name nvarchar(128) COLLATE NOCASE, enabled tinyint,
  description nvarchar(512), start_step_id int, category_id int, owner_sid varbinary(85),
  date_created datetime, date_modified datetime, version_number int);
CREATE TABLE IF NOT EXISTS msdb.sysjobsteps(
  job_id uniqueidentifier, step_id int, step_name nvarchar(128) COLLATE NOCASE, subsystem nvarchar(40),
  command nvarcharmax, database_name nvarchar(128), last_run_outcome int,
  last_run_duration int, last_run_retries int, last_run_date int, last_run_time int);
CREATE TABLE IF NOT EXISTS msdb.sysjobhistory(
  instance_id INTEGER PRIMARY KEY, job_id uniqueidentifier, step_id int, step_name nvarchar(128),
  sql_message_id int, sql_severity int, message nvarchar(4000), run_status int, run_date int,
  run_time int, run_duration int, operator_id_emailed int, retries_attempted int,
  server nvarchar(128));
CREATE TABLE IF NOT EXISTS msdb.sysschedules(
  schedule_id INTEGER PRIMARY KEY, schedule_uid uniqueidentifier, name nvarchar(128), enabled int,
  freq_type int, freq_interval int, freq_subday_type int, freq_subday_interval int,
  active_start_date int, active_start_time int);
CREATE TABLE IF NOT EXISTS msdb.sysjobschedules(
  schedule_id int, job_id uniqueidentifier, next_run_date int, next_run_time int);
CREATE TABLE IF NOT EXISTS msdb.sysssispackages(
  name nvarchar(128) COLLATE NOCASE, id uniqueidentifier, description nvarchar(1024), createdate datetime,
  folderid uniqueidentifier, ownersid varbinary(85), packagedata varbinarymax,
  packageformat int, packagetype int, vermajor int, verminor int, verbuild int,
  vercomments nvarchar(1024), verid uniqueidentifier, isencrypted bit, readrolesid varbinary(85),
  writerolesid varbinary(85));
CREATE VIEW IF NOT EXISTS msdb.sysmaintplan_plans AS
  SELECT name, id, description, createdate AS create_date, 'sa' AS owner, 0 AS from_msx,
         0 AS has_targets, vermajor AS version_major, verminor AS version_minor,
         verbuild AS version_build, vercomments AS version_comments
  FROM sysssispackages WHERE packagetype = 6;
CREATE TABLE IF NOT EXISTS msdb.sysmaintplan_subplans(
  subplan_id uniqueidentifier, subplan_name nvarchar(128), subplan_description nvarchar(512),
  plan_id uniqueidentifier, job_id uniqueidentifier, msx_job_id uniqueidentifier,
  schedule_id int, msx_plan bit);
CREATE TABLE IF NOT EXISTS msdb.sysmaintplan_log(
  task_detail_id uniqueidentifier, plan_id uniqueidentifier, subplan_id uniqueidentifier,
  start_time datetime, end_time datetime, succeeded bit, logged_remotely bit,
  source_server_name nvarchar(128), plan_name nvarchar(128), subplan_name nvarchar(128));
CREATE TABLE IF NOT EXISTS msdb.sysmaintplan_logdetail(
  task_detail_id uniqueidentifier, line1 nvarchar(256), line2 nvarchar(256), line3 nvarchar(256),
  line4 nvarchar(256), line5 nvarchar(256), server_name nvarchar(128), start_time datetime,
  end_time datetime, error_number int, error_message nvarcharmax, command nvarcharmax,
  succeeded bit);
"#;

const SYS_SCHEMA: &str = r#"
CREATE TABLE sys.databases(
  name nvarchar(128) COLLATE NOCASE, database_id int, source_database_id int, owner_sid varbinary(85),
  create_date datetime, compatibility_level tinyint, collation_name nvarchar(128),
  user_access tinyint, user_access_desc nvarchar(60), is_read_only bit, state tinyint,
  state_desc nvarchar(60), recovery_model tinyint, recovery_model_desc nvarchar(60),
  page_verify_option tinyint, page_verify_option_desc nvarchar(60), log_reuse_wait tinyint,
  log_reuse_wait_desc nvarchar(60), is_encrypted bit);
CREATE TABLE sys.master_files(
  database_id int, file_id int, file_guid uniqueidentifier, type tinyint, type_desc nvarchar(60),
  data_space_id int, name nvarchar(128) COLLATE NOCASE, physical_name nvarchar(260), state tinyint,
  state_desc nvarchar(60), size int, max_size int, growth int, is_media_read_only bit,
  is_read_only bit, is_percent_growth bit);
CREATE TABLE sys.dm_db_log_space_usage(
  database_id int, total_log_size_in_bytes bigint, used_log_space_in_bytes bigint,
  used_log_space_in_percent real, log_space_in_bytes_since_last_backup bigint);
CREATE TABLE sys.dm_exec_requests(
  session_id smallint, request_id int, start_time datetime, status nvarchar(30),
  command nvarchar(32), database_id smallint, user_id int, blocking_session_id smallint,
  wait_type nvarchar(60), wait_time int, last_wait_type nvarchar(60), percent_complete real,
  estimated_completion_time bigint, cpu_time int, total_elapsed_time int, reads bigint,
  writes bigint);
CREATE TABLE sys.dm_exec_sessions(
  session_id smallint, login_time datetime, host_name nvarchar(128), program_name nvarchar(128),
  login_name nvarchar(128), status nvarchar(30), database_id smallint, is_user_process bit);
CREATE TABLE sys.dm_server_services(
  servicename nvarchar(256), startup_type int, startup_type_desc nvarchar(256), status int,
  status_desc nvarchar(256), process_id int, last_startup_time datetimeoffset,
  service_account nvarchar(256), filename nvarchar(256), is_clustered nvarchar(1),
  cluster_nodename nvarchar(256), instant_file_initialization_enabled nvarchar(1));
"#;

/// The catalog connection.
pub struct Catalog {
    /// The SQLite connection: `main` scratch, `msdb` on disk, `sys` in memory.
    pub conn: Connection,
}

/// The maintenance plan package XML with a Maintenance Cleanup Task.
pub fn cleanup_package_xml(folder: &str, ext: &str, older_than: i64, unit: i64) -> String {
    format!(
        r#"<?xml version="1.0"?>
<DTS:Executable xmlns:DTS="www.microsoft.com/SqlServer/Dts" DTS:ExecutableType="MSDTS.Package.2">
<DTS:Property DTS:Name="ObjectName">Nightly PACS maintenance</DTS:Property>
<DTS:Executable DTS:ExecutableType="Microsoft.SqlServer.Management.DatabaseMaintenance.DbMaintenanceBackupTask, Microsoft.SqlServer.MaintenancePlanTasks">
<DTS:Property DTS:Name="ObjectName">Back Up Database (Full)</DTS:Property>
<DTS:ObjectData><SQLTask:SqlTaskData xmlns:SQLTask="www.microsoft.com/sqlserver/dts/tasks/sqltask" SQLTask:BackupDestinationAutoFolderPath="{folder}" SQLTask:BackupFileExtension="{ext}"/></DTS:ObjectData>
</DTS:Executable>
<DTS:Executable DTS:ExecutableType="Microsoft.SqlServer.Management.DatabaseMaintenance.DbMaintenanceFileCleanupTask, Microsoft.SqlServer.MaintenancePlanTasks">
<DTS:Property DTS:Name="ObjectName">Maintenance Cleanup Task</DTS:Property>
<DTS:ObjectData><SQLTask:SqlTaskData xmlns:SQLTask="www.microsoft.com/sqlserver/dts/tasks/sqltask" SQLTask:FileTypeSelected="0" SQLTask:FilePath="" SQLTask:FolderPath="{folder}" SQLTask:CleanSubFolders="False" SQLTask:FileExtension="{ext}" SQLTask:AgeBased="True" SQLTask:DeleteSpecificFile="False" SQLTask:RemoveOlderThan="{older_than}" SQLTask:TimeUnitsType="{unit}"/></DTS:ObjectData>
</DTS:Executable>
</DTS:Executable>"#
    )
}

/// The id of the seeded cleanup job.
pub const CLEANUP_JOB_ID: &str = "7E0B3E8A-3F0C-4B7D-9D2E-1C5A8B9F0A11";
/// The id of the seeded maintenance plan.
pub const PLAN_ID: &str = "5B1F4C2D-6E7A-4F80-9A1B-2C3D4E5F6A77";
/// The id of the seeded subplan.
pub const SUBPLAN_ID: &str = "9C8D7E6F-5A4B-4C3D-8E2F-1A0B9C8D7E66";

impl Catalog {
    /// Opens msdb under `root` and creates the system views.
    pub fn open(root: &Path) -> rusqlite::Result<Catalog> {
        let conn = Connection::open_in_memory()?;
        let msdb = root.join("msdb.sqlite3");
        conn.execute(
            "ATTACH DATABASE ?1 AS msdb",
            params![msdb.display().to_string()],
        )?;
        conn.execute("ATTACH DATABASE ':memory:' AS sys", [])?;
        conn.execute_batch(MSDB_SCHEMA)?;
        conn.execute_batch(SYS_SCHEMA)?;
        Ok(Catalog { conn })
    }

    /// Seeds the Agent jobs and the maintenance plan with its cleanup task.
    pub fn seed_agent(&self, backup_dir: &Path, now: i64) -> rusqlite::Result<()> {
        let folder = backup_dir.display().to_string();
        let created = crate::simulator::sql::fmt_unix(now);
        let xml = cleanup_package_xml(&folder, "bak", 4, 0);
        self.conn.execute(
            "INSERT INTO msdb.sysssispackages(name, id, description, createdate, folderid, packagedata,
               packageformat, packagetype, vermajor, verminor, verbuild, isencrypted)
             VALUES ('Nightly PACS maintenance', ?1, 'Backups and cleanup', ?2,
               '08AA12D5-8F98-4DAB-A4FC-980B150A5DC8', ?3, 1, 6, 1, 0, 12, 0)",
            params![PLAN_ID, created, xml.into_bytes()],
        )?;
        let jobs = [
            (CLEANUP_JOB_ID, "Nightly PACS maintenance.Subplan_1", "Maintenance Cleanup",
             "SSIS", format!("/Server \"$(ESCAPE_NONE(SRVR))\" /SQL \"Maintenance Plans\\Nightly PACS maintenance\" /set \"\\Package\\Subplan_1.Disable;false\" (cleanup of *.bak older than 4 days in {folder})")),
            ("3A2B1C0D-9E8F-4A7B-8C6D-5E4F3A2B1C01", "DatabaseBackup - USER_DATABASES - FULL", "DatabaseBackup",
             "TSQL", format!("EXECUTE dbo.DatabaseBackup @Databases = 'USER_DATABASES', @Directory = N'{folder}', @BackupType = 'FULL', @Verify = 'Y', @CleanupTime = 96, @CheckSum = 'Y'")),
        ];
        for (i, (id, name, step, subsystem, cmd)) in jobs.iter().enumerate() {
            self.conn.execute(
                "INSERT INTO msdb.sysjobs(job_id, originating_server_id, name, enabled, description,
                   start_step_id, category_id, date_created, date_modified, version_number)
                 VALUES (?1, 0, ?2, 1, 'No description available.', 1, 3, ?3, ?3, 1)",
                params![id, name, created],
            )?;
            self.conn.execute(
                "INSERT INTO msdb.sysjobsteps(job_id, step_id, step_name, subsystem, command,
                   database_name, last_run_outcome, last_run_duration, last_run_retries,
                   last_run_date, last_run_time) VALUES (?1, 1, ?2, ?3, ?4, 'master', 5, 0, 0, 0, 0)",
                params![id, step, subsystem, cmd],
            )?;
            self.conn.execute(
                "INSERT INTO msdb.sysschedules(schedule_id, schedule_uid, name, enabled, freq_type,
                   freq_interval, freq_subday_type, freq_subday_interval, active_start_date,
                   active_start_time) VALUES (?1, ?2, ?3, 1, 4, 1, 1, 0, 20260101, ?4)",
                params![
                    i as i64 + 1,
                    crate::simulator::engine::new_guid(),
                    format!("{name} schedule"),
                    20000 + i as i64 * 10000
                ],
            )?;
            self.conn.execute(
                "INSERT INTO msdb.sysjobschedules(schedule_id, job_id, next_run_date, next_run_time)
                 VALUES (?1, ?2, 0, 0)",
                params![i as i64 + 1, id],
            )?;
        }
        self.conn.execute(
            "INSERT INTO msdb.sysmaintplan_subplans(subplan_id, subplan_name, subplan_description,
               plan_id, job_id, schedule_id, msx_plan) VALUES (?1, 'Subplan_1', 'Cleanup', ?2, ?3, 1, 0)",
            params![SUBPLAN_ID, PLAN_ID, CLEANUP_JOB_ID],
        )?;
        Ok(())
    }
}
