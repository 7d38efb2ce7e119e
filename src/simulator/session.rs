//! One client connection: the handshake, then a reader task that turns packets into
//! requests (setting the cancel flag at once when an ATTENTION arrives) and an
//! executor that runs them in order and writes the replies. An ATTENTION is answered
//! with DONE+ATTN when the executor reaches it, whether the statement it cancelled
//! was still running or had already finished.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::engine::SessionInfo;
use super::server::{KillSwitch, Shared};
use super::tds::login::{parse_login7, parse_prelogin, prelogin_reply};
use super::tds::packet::{read_message, Message, PacketType, PacketWriter};
use super::tds::request::{parse_batch, parse_rpc};
use super::tds::token::{self, Column, DONE_ATTN, DONE_ERROR};
use super::tds::types::Value;

/// Why a statement stopped early.
#[derive(Debug)]
pub enum Abort {
    /// The client sent ATTENTION.
    Cancelled,
    /// The connection is to be closed (fault injection or I/O failure).
    Disconnect,
}

/// The state handlers work with while running a request.
pub struct Ctx<'a> {
    /// The instance.
    pub shared: Arc<Shared>,
    /// @@SPID.
    pub spid: u16,
    /// Current database.
    pub db: String,
    /// Parameters of the current RPC (lower-case, without `@`).
    pub params: HashMap<String, Value>,
    /// Inside an RPC (statement DONEs become DONEINPROC).
    pub in_rpc: bool,
    /// Tokens not yet handed to the packet writer.
    pub out: Vec<u8>,
    pw: &'a mut PacketWriter,
    w: &'a mut OwnedWriteHalf,
    /// Becomes true when an ATTENTION arrives.
    pub cancel: watch::Receiver<bool>,
}

impl Ctx<'_> {
    /// Queues an INFO message.
    pub fn info(&mut self, number: i32, text: &str) {
        token::info(number, 1, 10, text, &mut self.out);
    }

    /// Queues an INFO with class 0 (DBCC and PRINT-style messages).
    pub fn info0(&mut self, number: i32, text: &str) {
        token::info(number, 1, 0, text, &mut self.out);
    }

    /// Queues an ERROR message.
    pub fn error(&mut self, number: i32, class: u8, text: &str) {
        token::error(number, 1, class, text, &mut self.out);
    }

    /// Queues a result set (without its DONE).
    pub fn rows(&mut self, cols: &[Column], rows: &[Vec<Value>]) {
        token::colmetadata(cols, &mut self.out);
        for r in rows {
            token::row(cols, r, &mut self.out);
        }
    }

    /// Sends what is queued now, in its own packet(s).
    pub async fn flush(&mut self) -> Result<(), Abort> {
        let out = std::mem::take(&mut self.out);
        self.pw.extend(&out);
        self.pw
            .flush_partial(self.w)
            .await
            .map_err(|_| Abort::Disconnect)
    }

    /// True once the client has sent ATTENTION.
    pub fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Waits until the client sends ATTENTION.
    pub async fn wait_cancel(&mut self) {
        let _ = self.cancel.wait_for(|c| *c).await;
    }
}

/// Outcome of one statement.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Rows returned or affected.
    pub count: Option<u64>,
    /// The statement failed.
    pub error: bool,
}

enum Req {
    Msg(Message),
    Attention,
}

/// Serves one connection to its end.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, spid: u16) {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let mut pw = PacketWriter::new(spid, 4096);
    // PRELOGIN
    let Ok(Some(msg)) = read_message(&mut r).await else {
        return;
    };
    if msg.kind != PacketType::PreLogin || parse_prelogin(&msg.data).is_err() {
        return;
    }
    pw.extend(&prelogin_reply(spid as u32));
    if pw.finish(&mut w).await.is_err() {
        return;
    }
    // LOGIN7
    let Ok(Some(msg)) = read_message(&mut r).await else {
        return;
    };
    let login = match (msg.kind, parse_login7(&msg.data)) {
        (PacketType::Login7, Ok(l)) => l,
        _ => return,
    };
    let ok = shared
        .logins
        .get(&login.user_name.to_ascii_lowercase())
        .is_some_and(|p| *p == login.password);
    let mut out = Vec::new();
    if !ok {
        token::error(
            18456,
            1,
            14,
            &format!("Login failed for user '{}'.", login.user_name),
            &mut out,
        );
        token::done(DONE_ERROR, 0, 0, &mut out);
        pw.extend(&out);
        let _ = pw.finish(&mut w).await;
        let _ = w.shutdown().await;
        return;
    }
    let requested = if login.database.is_empty() {
        "master".to_string()
    } else {
        login.database.clone()
    };
    let found = {
        let mut inst = shared.lock();
        let system = ["master", "msdb", "tempdb", "model"]
            .iter()
            .find(|s| s.eq_ignore_ascii_case(&requested))
            .map(|s| s.to_string());
        let found = system.or_else(|| inst.state.db(&requested).map(|d| d.name.clone()));
        if let Some(db) = &found {
            inst.sessions.insert(
                spid,
                SessionInfo {
                    login: login.user_name.clone(),
                    database: db.clone(),
                    host: login.host_name.clone(),
                    program: login.app_name.clone(),
                },
            );
        }
        found
    };
    let Some(mut db) = found else {
        token::error(
            4060,
            1,
            11,
            &format!(
                "Cannot open database \"{requested}\" requested by the login. The login failed."
            ),
            &mut out,
        );
        token::error(
            18456,
            1,
            14,
            &format!("Login failed for user '{}'.", login.user_name),
            &mut out,
        );
        token::done(DONE_ERROR, 0, 0, &mut out);
        pw.extend(&out);
        let _ = pw.finish(&mut w).await;
        return;
    };
    let packet_size = if login.packet_size == 0 {
        4096
    } else {
        login.packet_size.clamp(512, 32767)
    };
    token::envchange_str(1, &db, "master", &mut out);
    token::info(
        5701,
        2,
        0,
        &format!("Changed database context to '{db}'."),
        &mut out,
    );
    token::envchange_collation(&mut out);
    token::envchange_str(2, "us_english", "", &mut out);
    token::info(
        5703,
        1,
        0,
        "Changed language setting to us_english.",
        &mut out,
    );
    token::loginack(&mut out);
    token::envchange_str(4, &packet_size.to_string(), "4096", &mut out);
    token::done(0, 0, 0, &mut out);
    pw.extend(&out);
    if pw.finish(&mut w).await.is_err() {
        shared.lock().sessions.remove(&spid);
        return;
    }
    pw.set_packet_size(packet_size as usize);

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let cancel_tx = Arc::new(cancel_tx);
    let (killed_tx, mut killed_rx) = watch::channel(false);
    shared.kill_switches().insert(
        spid,
        KillSwitch {
            cancel: cancel_tx.clone(),
            killed: Arc::new(killed_tx),
        },
    );
    let reader_cancel = cancel_tx.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Ok(Some(m)) = read_message(&mut r).await {
            if m.kind == PacketType::Attention {
                reader_cancel.send_replace(true);
                if tx.send(Req::Attention).is_err() {
                    break;
                }
            } else if tx.send(Req::Msg(m)).is_err() {
                break;
            }
        }
    });
    let mut shutdown = shared.shutdown.subscribe();
    let cancel_rx = cancel_rx;
    loop {
        let req = tokio::select! {
            biased;
            _ = killed_rx.wait_for(|k| *k) => None,
            r = rx.recv() => r,
            _ = shutdown.recv() => None,
        };
        let Some(req) = req else { break };
        match req {
            Req::Attention => {
                // The cancelled statement has stopped (or had finished): acknowledge.
                let mut out = Vec::new();
                token::done(DONE_ATTN, 0, 0, &mut out);
                pw.extend(&out);
                if pw.finish(&mut w).await.is_err() {
                    break;
                }
                cancel_tx.send_replace(false);
            }
            Req::Msg(m) => {
                if m.ignore {
                    continue;
                }
                let mut ctx = Ctx {
                    shared: shared.clone(),
                    spid,
                    db: db.clone(),
                    params: HashMap::new(),
                    in_rpc: false,
                    out: Vec::new(),
                    pw: &mut pw,
                    w: &mut w,
                    cancel: cancel_rx.clone(),
                };
                let res = match m.kind {
                    PacketType::SqlBatch => {
                        let text = parse_batch(&m.data);
                        super::sql::run_batch(&mut ctx, &text).await
                    }
                    PacketType::Rpc => run_rpc(&mut ctx, &m.data).await,
                    _ => {
                        token::done(0, 0, 0, &mut ctx.out);
                        Ok(())
                    }
                };
                db = ctx.db.clone();
                let out = std::mem::take(&mut ctx.out);
                drop(ctx);
                match res {
                    Ok(()) => {
                        pw.extend(&out);
                        if pw.finish(&mut w).await.is_err() {
                            break;
                        }
                    }
                    Err(Abort::Cancelled) => {} // DONE+ATTN follows when the Attention is dequeued
                    Err(Abort::Disconnect) => break,
                }
                if let Some(s) = shared.lock().sessions.get_mut(&spid) {
                    s.database = db.clone();
                }
            }
        }
    }
    reader.abort();
    shared.kill_switches().remove(&spid);
    // Forget the session before closing the socket: once the client sees the
    // connection closed, sys.dm_exec_sessions/requests no longer list it.
    {
        let mut inst = shared.lock();
        inst.sessions.remove(&spid);
        inst.requests.remove(&spid);
    }
    let _ = w.shutdown().await;
}

async fn run_rpc(ctx: &mut Ctx<'_>, data: &[u8]) -> Result<(), Abort> {
    let call = match parse_rpc(data) {
        Ok(c) => c,
        Err(e) => {
            ctx.error(8009, 16, &format!("The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. {e}"));
            token::done(DONE_ERROR, 0, 0, &mut ctx.out);
            return Ok(());
        }
    };
    ctx.in_rpc = true;
    let name = call.proc_name.to_ascii_lowercase();
    let status = if name == "sp_executesql" {
        let stmt = call
            .params
            .first()
            .map(|(_, v)| v.to_text())
            .unwrap_or_default();
        let decl = call
            .params
            .get(1)
            .map(|(_, v)| v.to_text())
            .unwrap_or_default();
        let declared: Vec<String> = decl
            .split(',')
            .filter_map(|p| p.split_whitespace().next())
            .map(|n| n.trim_start_matches('@').to_ascii_lowercase())
            .collect();
        for (k, (pname, v)) in call.params.iter().skip(2).enumerate() {
            let key = if pname.is_empty() {
                declared.get(k).cloned().unwrap_or_default()
            } else {
                pname.trim_start_matches('@').to_ascii_lowercase()
            };
            ctx.params.insert(key, v.clone());
        }
        super::sql::run_batch(ctx, &stmt).await?;
        0
    } else {
        // A stored procedure called by name: run it as EXEC with named parameters.
        let mut text = format!("EXEC {}", call.proc_name);
        let args: Vec<String> = call
            .params
            .iter()
            .map(|(n, v)| {
                let lit = super::sql::literal_tsql(v);
                if n.is_empty() {
                    lit
                } else {
                    format!("{n} = {lit}")
                }
            })
            .collect();
        text.push(' ');
        text.push_str(&args.join(", "));
        super::sql::run_batch(ctx, &text).await?;
        0
    };
    token::returnstatus(status, &mut ctx.out);
    token::doneproc(0, 0, 0, &mut ctx.out);
    Ok(())
}
