//! The VM runtime: executes an inference block's operations on the contract state of its
//! parent, atomically; answers read-only calls and account queries at any block; and
//! builds the genesis state (epoch, cost contracts, boot contracts, their settings).
//!
//! Costs: every user transaction runs under a tracker whose limit is the smaller of the
//! per-transaction limit and what is left of the block's budget. A transaction that
//! exceeds it, fails at run time, or names a wrong nonce is rolled back whole and leaves
//! no trace (the block builder drops it); one whose function returns `(err ..)` is kept,
//! with its writes undone and its nonce spent, as in Stacks. Mints and consensus calls
//! run free: they are the chain's own duties.
//!
//! The VM's types are not `Send`: every call here runs to completion on the caller's
//! thread. The VM's own errors are large values; clippy's size lint is off here for them.
//! The VM signals some internal inconsistencies by panicking; each entry point
//! turns such a panic into an error, so bad data can fail a block but not the node.

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use clarity::vm::analysis::{run_analysis, AnalysisDatabase};
use clarity::vm::ast::{build_ast_with_rules, ASTRules};
use clarity::vm::contexts::OwnedEnvironment;
use clarity::vm::costs::{ExecutionCost, LimitedCostTracker};
use clarity::vm::database::ClarityDatabase;
use clarity::vm::errors::{CheckErrors, Error as VmError};
use clarity::vm::events::{STXEventType, StacksTransactionEvent};
use clarity::vm::types::{
    BuffData, PrincipalData, QualifiedContractIdentifier, ResponseData, StandardPrincipalData,
    Value,
};
use clarity::vm::{ClarityVersion, ContractName, SymbolicExpression};
use fai_primitives::Network;
use fai_storage::KeyValueStore;
use sha2::{Digest, Sha256};

use crate::error::{show_cost, ClarityError, Result};
use crate::store::{BlockInfo, BlockStore, ClarityStore};
use crate::tx::{BlockOp, Payload, Receipt, VmEvent, VmTransaction};
use crate::views::{Burnchain, Headers, LedgerView};
use crate::{boot, CLARITY_VERSION, EPOCH};

/// Limits of the VM on one network.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub network: Network,
    /// The most one transaction may cost.
    pub tx_limit: ExecutionCost,
    /// The most one block's transactions may cost together.
    pub block_limit: ExecutionCost,
    /// The most a read-only call (RPC `call-read`) may cost.
    pub read_only_limit: ExecutionCost,
    /// The largest contract source accepted, in bytes.
    pub max_contract_size: usize,
}

impl VmConfig {
    /// The limits of `network`: a block may cost what a Stacks block may, a transaction a
    /// fifth of it, a read-only call a tenth of a transaction.
    pub fn for_network(network: Network) -> Self {
        let block_limit = ExecutionCost {
            write_length: 15_000_000,
            write_count: 15_000,
            read_length: 100_000_000,
            read_count: 15_000,
            runtime: 5_000_000_000,
        };
        let fraction = |c: &ExecutionCost, d: u64| ExecutionCost {
            write_length: c.write_length.checked_div(d).unwrap_or(0),
            write_count: c.write_count.checked_div(d).unwrap_or(0),
            read_length: c.read_length.checked_div(d).unwrap_or(0),
            read_count: c.read_count.checked_div(d).unwrap_or(0),
            runtime: c.runtime.checked_div(d).unwrap_or(0),
        };
        let tx_limit = fraction(&block_limit, 5);
        VmConfig {
            network,
            read_only_limit: fraction(&tx_limit, 10),
            tx_limit,
            block_limit,
            max_contract_size: 128 * 1024,
        }
    }
}

/// The results of a block's operations, in order, what the included ones cost, and the
/// state root after the block.
#[derive(Debug, Clone)]
pub struct BlockResult {
    pub outcomes: Vec<Result<Receipt, String>>,
    pub cost: ExecutionCost,
    pub state_root: [u8; 32],
}

/// A block executed and not yet written: its results and state root, computed from
/// its writes, which stay in memory until [`ExecutedBlock::commit`]. Dropped, it leaves
/// nothing behind (a block refused for its root or a failed operation is not stored).
pub struct ExecutedBlock {
    pub result: BlockResult,
    store: ClarityStore,
    writes: BlockStore,
}

impl ExecutedBlock {
    /// Writes the block's state, atomically.
    pub fn commit(self) -> Result<BlockResult> {
        self.store.commit(self.writes)?;
        Ok(self.result)
    }
}

/// Each operation's outcome and what the included ones cost.
type Outcomes = (Vec<Result<Receipt, String>>, ExecutionCost);

/// A model approved in the genesis block.
#[derive(Debug, Clone)]
pub struct GenesisModel {
    pub id: [u8; 32],
    pub name: String,
    pub arch: String,
    pub context_length: u128,
    /// `replay` or `judge`.
    pub method: String,
}

/// The settings written into the boot contracts at genesis.
#[derive(Debug, Clone)]
pub struct Genesis {
    /// Ledger blocks per reward cycle.
    pub cycle_length: u128,
    pub min_stake: u128,
    pub min_bond: u128,
    /// Ledger blocks between a node's withdrawal request and its bond's release.
    pub withdraw_delay: u128,
    pub models: Vec<GenesisModel>,
}

/// The Clarity VM over the contract state of one database.
pub struct ClarityVm {
    store: ClarityStore,
    config: VmConfig,
    /// Answers of read-only calls by block and call (see [`ClarityVm::call_read_only`]).
    reads: Mutex<HashMap<ReadKey, (Value, ExecutionCost)>>,
}

/// A read-only call: the block it reads, sender, issuer, contract, function and the
/// arguments' consensus bytes.
type ReadKey = ([u8; 32], [u8; 20], [u8; 20], String, String, Vec<Vec<u8>>);

/// Read-only answers kept, at most (the memo starts afresh when full).
const MAX_READS_KEPT: usize = 4_096;

fn min_cost(a: &ExecutionCost, b: &ExecutionCost) -> ExecutionCost {
    ExecutionCost {
        write_length: a.write_length.min(b.write_length),
        write_count: a.write_count.min(b.write_count),
        read_length: a.read_length.min(b.read_length),
        read_count: a.read_count.min(b.read_count),
        runtime: a.runtime.min(b.runtime),
    }
}

fn remaining(limit: &ExecutionCost, used: &ExecutionCost) -> ExecutionCost {
    ExecutionCost {
        write_length: limit.write_length.saturating_sub(used.write_length),
        write_count: limit.write_count.saturating_sub(used.write_count),
        read_length: limit.read_length.saturating_sub(used.read_length),
        read_count: limit.read_count.saturating_sub(used.read_count),
        runtime: limit.runtime.saturating_sub(used.runtime),
    }
}

fn add_cost(a: &ExecutionCost, b: &ExecutionCost) -> ExecutionCost {
    ExecutionCost {
        write_length: a.write_length.saturating_add(b.write_length),
        write_count: a.write_count.saturating_add(b.write_count),
        read_length: a.read_length.saturating_add(b.read_length),
        read_count: a.read_count.saturating_add(b.read_count),
        runtime: a.runtime.saturating_add(b.runtime),
    }
}

fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(ClarityError::Vm(format!("{what}: the VM stopped: {msg}")))
        }
    }
}

/// A value's consensus serialisation (what keys the read-only memo).
fn consensus_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail; a value that cannot serialise keys as its text.
    if v.serialize_write(&mut out).is_err() {
        out = format!("{v}").into_bytes();
    }
    out
}

fn events(list: Vec<StacksTransactionEvent>) -> Vec<VmEvent> {
    list.into_iter()
        .map(|e| match e {
            StacksTransactionEvent::SmartContractEvent(d) => VmEvent::Print {
                contract: d.key.0.to_string(),
                value: d.value,
            },
            StacksTransactionEvent::STXEvent(STXEventType::STXTransferEvent(d)) => {
                VmEvent::Transfer {
                    from: d.sender.to_string(),
                    to: d.recipient.to_string(),
                    amount: d.amount,
                }
            }
            StacksTransactionEvent::STXEvent(STXEventType::STXMintEvent(d)) => VmEvent::Mint {
                to: d.recipient.to_string(),
                amount: d.amount,
            },
            StacksTransactionEvent::STXEvent(STXEventType::STXBurnEvent(d)) => VmEvent::Burn {
                from: d.sender.to_string(),
                amount: d.amount,
            },
            other => VmEvent::Other(format!("{other:?}")),
        })
        .collect()
}

/// The receipt of a contract call: kept in full when it returned `(ok ..)`.
fn call_receipt(value: Value, evs: Vec<StacksTransactionEvent>, cost: ExecutionCost) -> Receipt {
    Receipt {
        committed: matches!(
            value,
            Value::Response(ResponseData {
                committed: true,
                ..
            })
        ),
        result: value,
        events: events(evs),
        cost,
    }
}

/// What went wrong in the VM, with cost overruns told apart.
enum Failure {
    Cost(ExecutionCost),
    Other(ClarityError),
}

fn classify(e: VmError, what: impl Fn(String) -> ClarityError) -> Failure {
    match e {
        VmError::Unchecked(CheckErrors::CostBalanceExceeded(used, _)) => Failure::Cost(used),
        VmError::Unchecked(CheckErrors::MemoryBalanceExceeded(used, limit)) => Failure::Other(
            what(format!("memory {used} bytes exceeds the limit {limit}")),
        ),
        other => Failure::Other(what(other.to_string())),
    }
}

impl ClarityVm {
    pub fn new(kv: Arc<dyn KeyValueStore>, config: VmConfig) -> Self {
        ClarityVm {
            store: ClarityStore::new(kv),
            config,
            reads: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &ClarityStore {
        &self.store
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    fn mainnet(&self) -> bool {
        self.config.network == Network::Mainnet
    }

    fn chain_id(&self) -> u32 {
        self.config.network.chain_id()
    }

    /// The version byte of principals on this network (`S P..` on mainnet, `S T..` else).
    pub fn address_version(&self) -> u8 {
        if self.mainnet() {
            22
        } else {
            26
        }
    }

    /// The principal of a key hash.
    pub fn principal(&self, key_hash: [u8; 20]) -> PrincipalData {
        PrincipalData::Standard(StandardPrincipalData(self.address_version(), key_hash))
    }

    /// The boot principal: it deploys the boot contracts and makes the consensus calls;
    /// its key hash is zero, so nobody can sign for it.
    pub fn boot_principal(&self) -> StandardPrincipalData {
        StandardPrincipalData(self.address_version(), [0; 20])
    }

    /// The id of a contract.
    pub fn contract_id(&self, issuer: [u8; 20], name: &str) -> Result<QualifiedContractIdentifier> {
        let name = ContractName::try_from(name.to_string())
            .map_err(|e| ClarityError::BadName(name.to_string(), e.to_string()))?;
        Ok(QualifiedContractIdentifier::new(
            StandardPrincipalData(self.address_version(), issuer),
            name,
        ))
    }

    /// The id of a boot contract.
    pub fn boot_contract(&self, name: &str) -> Result<QualifiedContractIdentifier> {
        self.contract_id([0; 20], name)
    }

    fn headers(&self) -> Headers<'_> {
        Headers {
            store: &self.store,
            address_version: self.address_version(),
        }
    }

    fn tracker(
        &self,
        db: &mut ClarityDatabase,
        limit: Option<ExecutionCost>,
    ) -> Result<LimitedCostTracker> {
        match limit {
            None => Ok(LimitedCostTracker::new_free()),
            Some(limit) => {
                LimitedCostTracker::new_mid_block(self.mainnet(), self.chain_id(), limit, db, EPOCH)
                    .map_err(|e| ClarityError::Vm(format!("cannot start cost tracking: {e:?}")))
            }
        }
    }

    /// Runs `f` in a top-level environment over `db` and takes the database back.
    fn with_env<'a, R>(
        &self,
        db: ClarityDatabase<'a>,
        tracker: LimitedCostTracker,
        f: impl FnOnce(&mut OwnedEnvironment<'a, '_>) -> R,
    ) -> Result<(ClarityDatabase<'a>, ExecutionCost, R)> {
        let mut env =
            OwnedEnvironment::new_cost_limited(self.mainnet(), self.chain_id(), db, tracker, EPOCH);
        let r = f(&mut env);
        let cost = env.get_cost_total();
        let (db, _) = env
            .destruct()
            .ok_or_else(|| ClarityError::Vm("environment not at top level".into()))?;
        Ok((db, cost, r))
    }

    /// Parses, type-checks and initialises a contract inside the current layer of `db`.
    #[allow(clippy::too_many_arguments)]
    fn deploy<'a>(
        &self,
        db: ClarityDatabase<'a>,
        headers: &'a Headers<'a>,
        burn: &'a Burnchain<'a>,
        mut tracker: LimitedCostTracker,
        id: &QualifiedContractIdentifier,
        source: &str,
        version: ClarityVersion,
    ) -> Result<(
        ClarityDatabase<'a>,
        ExecutionCost,
        Result<Vec<VmEvent>, Failure>,
    )> {
        let name = id.to_string();
        if source.len() > self.config.max_contract_size {
            let e = ClarityError::ContractTooLarge {
                name,
                size: source.len(),
                max: self.config.max_contract_size,
            };
            return Ok((db, ExecutionCost::zero(), Err(Failure::Other(e))));
        }
        let mut db = db;
        if db.has_contract(id) {
            return Ok((
                db,
                ExecutionCost::zero(),
                Err(Failure::Other(ClarityError::ContractExists(name))),
            ));
        }
        let bad = |detail: String| ClarityError::BadContract {
            name: id.to_string(),
            detail,
        };
        let mut ast = match build_ast_with_rules(
            id,
            source,
            &mut tracker,
            version,
            EPOCH,
            ASTRules::PrecheckSize,
        ) {
            Ok(ast) => ast,
            Err(e) => {
                let failure = match &e.err {
                    clarity::vm::ast::errors::ParseErrors::CostBalanceExceeded(used, _) => {
                        Failure::Cost(used.clone())
                    }
                    _ => Failure::Other(bad(e.to_string())),
                };
                return Ok((db, tracker.get_total(), Err(failure)));
            }
        };
        let mut analysis_db = AnalysisDatabase::new_with_rollback_wrapper(db.destroy());
        let analysed = run_analysis(
            id,
            &mut ast.expressions,
            &mut analysis_db,
            false,
            tracker,
            EPOCH,
            version,
        );
        let db = ClarityDatabase::new_with_rollback_wrapper(analysis_db.destroy(), headers, burn);
        let mut analysis = match analysed {
            Ok(a) => a,
            Err((e, tracker)) => {
                let failure = match e.err {
                    CheckErrors::CostBalanceExceeded(used, _) => Failure::Cost(used),
                    other => Failure::Other(bad(clarity::vm::analysis::errors::CheckError::new(
                        other,
                    )
                    .to_string())),
                };
                return Ok((db, tracker.get_total(), Err(failure)));
            }
        };
        let tracker = analysis.take_contract_cost_tracker();
        let (db, cost, r) = self.with_env(db, tracker, |env| {
            env.initialize_contract_from_ast(id.clone(), version, &ast, source, None)
        })?;
        match r {
            Err(e) => Ok((db, cost, Err(classify(e, bad)))),
            Ok(((), _, evs)) => {
                let mut analysis_db = AnalysisDatabase::new_with_rollback_wrapper(db.destroy());
                analysis_db.begin();
                let saved = analysis_db.insert_contract(id, &analysis);
                match saved {
                    Ok(()) => analysis_db.commit(),
                    Err(_) => analysis_db.roll_back(),
                }
                let db = ClarityDatabase::new_with_rollback_wrapper(
                    analysis_db.destroy(),
                    headers,
                    burn,
                );
                match saved {
                    Ok(()) => Ok((db, cost, Ok(events(evs)))),
                    Err(e) => Ok((db, cost, Err(Failure::Other(bad(e.to_string()))))),
                }
            }
        }
    }

    /// Runs one operation in its own layer of `db`: kept on success, rolled back otherwise.
    fn run_op<'a>(
        &self,
        mut db: ClarityDatabase<'a>,
        headers: &'a Headers<'a>,
        burn: &'a Burnchain<'a>,
        op: &BlockOp,
        used: &mut ExecutionCost,
    ) -> Result<(ClarityDatabase<'a>, Result<Receipt>)> {
        db.begin();
        let (mut db, outcome) = match op {
            BlockOp::Tx(tx) => self.run_tx(db, headers, burn, tx, used)?,
            BlockOp::Mint { to, amount } => {
                let to = self.principal(*to);
                let amount = *amount;
                let tracker = LimitedCostTracker::new_free();
                let boot: PrincipalData = self.boot_principal().into();
                let (db, _, r) = self.with_env(db, tracker, |env| {
                    env.execute_in_env(boot, None, None, |env| {
                        let mut snapshot =
                            env.global_context.database.get_stx_balance_snapshot(&to);
                        snapshot.credit(amount);
                        snapshot.save();
                        env.global_context
                            .database
                            .increment_ustx_liquid_supply(amount)
                    })
                })?;
                let outcome = r
                    .map(|_| Receipt {
                        result: Value::okay_true(),
                        committed: true,
                        events: vec![VmEvent::Mint {
                            to: to.to_string(),
                            amount,
                        }],
                        cost: ExecutionCost::zero(),
                    })
                    .map_err(|e| ClarityError::Vm(format!("mint failed: {e}")));
                (db, outcome)
            }
            BlockOp::Escrow {
                from,
                to,
                amount,
                nonce,
            } => {
                let sender = self.principal(*from);
                let expected = db.get_account_nonce(&sender);
                if expected != *nonce {
                    (
                        db,
                        Err(ClarityError::BadNonce {
                            expected,
                            got: *nonce,
                        }),
                    )
                } else {
                    let (to, amount) = (self.principal(*to), *amount);
                    let tracker = LimitedCostTracker::new_free();
                    let (mut db, _, r) = self.with_env(db, tracker, |env| {
                        env.stx_transfer(&sender, &to, amount, &BuffData::empty())
                    })?;
                    let outcome = match r {
                        Ok((value, _, evs)) => {
                            db.set_account_nonce(&sender, nonce.saturating_add(1));
                            Ok(Receipt {
                                result: value,
                                committed: true,
                                events: events(evs),
                                cost: ExecutionCost::zero(),
                            })
                        }
                        Err(_) => Err(ClarityError::TransferFailed(format!(
                            "escrow of {amount} from {sender}: not enough funds"
                        ))),
                    };
                    (db, outcome)
                }
            }
            BlockOp::Move { from, to, amount } => {
                let (from, to, amount) = (self.principal(*from), self.principal(*to), *amount);
                let tracker = LimitedCostTracker::new_free();
                let (db, _, r) = self.with_env(db, tracker, |env| {
                    env.stx_transfer(&from, &to, amount, &BuffData::empty())
                })?;
                let outcome = r
                    .map(|(value, _, evs)| Receipt {
                        result: value,
                        committed: true,
                        events: events(evs),
                        cost: ExecutionCost::zero(),
                    })
                    .map_err(|_| {
                        ClarityError::TransferFailed(format!(
                            "{amount} from {from} to {to}: not enough funds"
                        ))
                    });
                (db, outcome)
            }
            BlockOp::Report {
                reporter,
                nonce,
                contract,
                function,
                args,
            } => {
                let sender = self.principal(*reporter);
                let expected = db.get_account_nonce(&sender);
                if expected != *nonce {
                    let e = ClarityError::BadNonce {
                        expected,
                        got: *nonce,
                    };
                    (db, Err(e))
                } else {
                    let (mut db, outcome) = self.system_call(db, contract, function, args)?;
                    if outcome.is_ok() {
                        db.set_account_nonce(&sender, nonce.saturating_add(1));
                    }
                    (db, outcome)
                }
            }
            BlockOp::System {
                contract,
                function,
                args,
            } => self.system_call(db, contract, function, args)?,
        };
        match &outcome {
            Ok(receipt) => {
                db.commit();
                *used = add_cost(used, &receipt.cost);
            }
            Err(_) => db.roll_back(),
        }
        Ok((db, outcome))
    }

    /// Calls `function` of boot contract `contract` as the boot principal.
    fn system_call<'a>(
        &self,
        db: ClarityDatabase<'a>,
        contract: &str,
        function: &str,
        args: &[Value],
    ) -> Result<(ClarityDatabase<'a>, Result<Receipt>)> {
        let id = self.boot_contract(contract)?;
        let boot: PrincipalData = self.boot_principal().into();
        let atoms: Vec<SymbolicExpression> = args
            .iter()
            .cloned()
            .map(SymbolicExpression::atom_value)
            .collect();
        let tracker = LimitedCostTracker::new_free();
        let (db, cost, r) = self.with_env(db, tracker, |env| {
            env.execute_transaction(boot, None, id.clone(), function, &atoms)
        })?;
        let outcome = r
            .map(|(value, _, evs)| call_receipt(value, evs, cost))
            .map_err(|e| ClarityError::CallFailed(format!("{id} {function}: {e}")));
        Ok((db, outcome))
    }

    fn run_tx<'a>(
        &self,
        mut db: ClarityDatabase<'a>,
        headers: &'a Headers<'a>,
        burn: &'a Burnchain<'a>,
        tx: &VmTransaction,
        used: &ExecutionCost,
    ) -> Result<(ClarityDatabase<'a>, Result<Receipt>)> {
        if tx.sender == [0; 20] {
            let e = ClarityError::Vm("the boot principal cannot send transactions".into());
            return Ok((db, Err(e)));
        }
        let sender = self.principal(tx.sender);
        let expected = db.get_account_nonce(&sender);
        if expected != tx.nonce {
            return Ok((
                db,
                Err(ClarityError::BadNonce {
                    expected,
                    got: tx.nonce,
                }),
            ));
        }
        let left = remaining(&self.config.block_limit, used);
        let limit = min_cost(&self.config.tx_limit, &left);
        let block_bound = limit != self.config.tx_limit;
        let tracker = self.tracker(&mut db, Some(limit.clone()))?;
        let (mut db, cost, r): (_, _, Result<Receipt, Failure>) = match &tx.payload {
            Payload::Transfer { to, amount, memo } => {
                let to = self.principal(*to);
                let memo = BuffData { data: memo.clone() };
                let (db, cost, r) = self.with_env(db, tracker, |env| {
                    env.stx_transfer(&sender, &to, *amount, &memo)
                })?;
                let r = r
                    .map(|(value, _, evs)| Receipt {
                        result: value,
                        committed: true,
                        events: events(evs),
                        cost: cost.clone(),
                    })
                    .map_err(|e| match classify(e, ClarityError::TransferFailed) {
                        Failure::Other(ClarityError::TransferFailed(_)) => {
                            Failure::Other(ClarityError::TransferFailed(format!(
                                "{amount} to {to}: amount zero, sender equal to recipient, or not enough funds"
                            )))
                        }
                        other => other,
                    });
                (db, cost, r)
            }
            Payload::Call {
                issuer,
                name,
                function,
                args,
            } => {
                let id = match self.contract_id(*issuer, name) {
                    Ok(id) => id,
                    Err(e) => return Ok((db, Err(e))),
                };
                if !db.has_contract(&id) {
                    return Ok((db, Err(ClarityError::NoSuchContract(id.to_string()))));
                }
                let atoms: Vec<SymbolicExpression> = args
                    .iter()
                    .cloned()
                    .map(SymbolicExpression::atom_value)
                    .collect();
                let (db, cost, r) = self.with_env(db, tracker, |env| {
                    env.execute_transaction(sender.clone(), None, id.clone(), function, &atoms)
                })?;
                let r = r
                    .map(|(value, _, evs)| call_receipt(value, evs, cost.clone()))
                    .map_err(|e| {
                        classify(e, |m| {
                            ClarityError::CallFailed(format!("{id} {function}: {m}"))
                        })
                    });
                (db, cost, r)
            }
            Payload::Deploy { name, source } => {
                let id = match self.contract_id(tx.sender, name) {
                    Ok(id) => id,
                    Err(e) => return Ok((db, Err(e))),
                };
                let (db, cost, r) =
                    self.deploy(db, headers, burn, tracker, &id, source, CLARITY_VERSION)?;
                let r = r.map(|evs| Receipt {
                    result: Value::okay_true(),
                    committed: true,
                    events: evs,
                    cost: cost.clone(),
                });
                (db, cost, r)
            }
        };
        let outcome = match r {
            Ok(receipt) => {
                db.set_account_nonce(&sender, tx.nonce.saturating_add(1));
                Ok(receipt)
            }
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::Cost(spent)) => {
                let spent = if spent == ExecutionCost::zero() {
                    cost
                } else {
                    spent
                };
                if block_bound {
                    Err(ClarityError::BlockFull {
                        used: show_cost(&add_cost(used, &spent)),
                        limit: show_cost(&self.config.block_limit),
                    })
                } else {
                    Err(ClarityError::CostLimit {
                        used: show_cost(&spent),
                        limit: show_cost(&limit),
                    })
                }
            }
        };
        Ok((db, outcome))
    }

    /// Opens block `info` over its parent's state and lets `body` run operations in one
    /// layer of the VM's database; the block's writes stay in memory, its state root
    /// computed, until the caller commits them.
    fn in_block<F>(
        &self,
        what: &str,
        info: BlockInfo,
        ledger: &dyn LedgerView,
        body: F,
    ) -> Result<ExecutedBlock>
    where
        F: for<'a> FnOnce(
            ClarityDatabase<'a>,
            &'a Headers<'a>,
            &'a Burnchain<'a>,
        ) -> Result<(ClarityDatabase<'a>, Outcomes)>,
    {
        guarded(what, || {
            let mut block = self.store.block_store(info)?;
            let headers = self.headers();
            let burn = Burnchain {
                store: &self.store,
                ledger,
            };
            let (outcomes, cost) = {
                let mut db = ClarityDatabase::new(&mut block, &headers, &burn);
                db.begin();
                let (mut db, result) = body(db, &headers, &burn)?;
                db.commit();
                result
            };
            block.take_error()?;
            let state_root = self.store.root_of(&block)?;
            Ok(ExecutedBlock {
                result: BlockResult {
                    outcomes,
                    cost,
                    state_root,
                },
                store: self.store.clone(),
                writes: block,
            })
        })
    }

    /// Runs `ops` in order, each in its own layer; `check` may refuse an outcome.
    fn run_ops<'a, 'o>(
        &self,
        mut db: ClarityDatabase<'a>,
        headers: &'a Headers<'a>,
        burn: &'a Burnchain<'a>,
        ops: impl Iterator<Item = &'o BlockOp>,
        check: impl Fn(&BlockOp, &Result<Receipt>) -> Result<()>,
    ) -> Result<(ClarityDatabase<'a>, Outcomes)> {
        let mut used = ExecutionCost::zero();
        let mut outcomes = Vec::new();
        for op in ops {
            let (next, outcome) = self.run_op(db, headers, burn, op, &mut used)?;
            db = next;
            check(op, &outcome)?;
            outcomes.push(outcome.map_err(|e| e.to_string()));
        }
        Ok((db, (outcomes, used)))
    }

    /// Executes the operations of block `info` on its parent's state and commits the
    /// block's state atomically. Operations that fail are rolled back and reported; the
    /// caller decides whether such a block is valid (to decide before anything is
    /// written, [`ClarityVm::run_block`]).
    pub fn execute_block(
        &self,
        info: BlockInfo,
        ledger: &dyn LedgerView,
        ops: &[BlockOp],
    ) -> Result<BlockResult> {
        self.run_block(info, ledger, ops)?.commit()
    }

    /// Executes the operations of block `info` on its parent's state without writing
    /// anything: the caller looks at the outcomes and the state root, then commits the
    /// block or drops it.
    pub fn run_block(
        &self,
        info: BlockInfo,
        ledger: &dyn LedgerView,
        ops: &[BlockOp],
    ) -> Result<ExecutedBlock> {
        self.in_block("block execution", info, ledger, |db, headers, burn| {
            self.run_ops(db, headers, burn, ops.iter(), |_, _| Ok(()))
        })
    }

    /// Builds the genesis state: the epoch, the cost contracts, the boot contracts and
    /// their settings, then `ops` (the genesis mints, if any).
    pub fn genesis(
        &self,
        info: BlockInfo,
        ledger: &dyn LedgerView,
        genesis: &Genesis,
        ops: &[BlockOp],
    ) -> Result<BlockResult> {
        let settings = boot::settings(genesis)?;
        self.in_block("genesis", info, ledger, |mut db, headers, burn| {
            db.set_clarity_epoch_version(EPOCH);
            for (name, source, version) in boot::contracts(self.mainnet()) {
                let id = self.boot_contract(name)?;
                db.begin();
                let (next, _, r) = self.deploy(
                    db,
                    headers,
                    burn,
                    LimitedCostTracker::new_free(),
                    &id,
                    &source,
                    version,
                )?;
                db = next;
                match r {
                    Ok(_) => db.commit(),
                    Err(Failure::Other(e)) => return Err(e),
                    Err(Failure::Cost(_)) => {
                        return Err(ClarityError::Vm(format!("boot contract {name}: cost")))
                    }
                }
            }
            self.run_ops(
                db,
                headers,
                burn,
                settings.iter().chain(ops),
                |op, outcome| match (op, outcome) {
                    (BlockOp::System { function, .. }, Ok(r)) if !r.committed => {
                        Err(ClarityError::Vm(format!(
                            "genesis setting {function} failed: {}",
                            r.result
                        )))
                    }
                    _ => Ok(()),
                },
            )
        })?
        .commit()
    }

    /// The state on top of block `tip`, for reads: a block that is never committed.
    fn reading_block(&self, tip: &[u8; 32]) -> Result<BlockInfo> {
        let info = self
            .store
            .block(tip)?
            .ok_or_else(|| ClarityError::UnknownBlock(hex::encode(tip)))?;
        let mut h = Sha256::new();
        h.update(b"fai-clarity-read/v1");
        h.update(tip);
        Ok(BlockInfo {
            id: h.finalize().into(),
            parent: *tip,
            height: info.height.saturating_add(1),
            ..info
        })
    }

    /// Runs `f` on a database that reads the state of `tip` (its stack empty; `f` opens
    /// and discards its own layers: nothing it does is committed).
    fn read_at<T>(
        &self,
        what: &str,
        tip: &[u8; 32],
        ledger: &dyn LedgerView,
        f: impl for<'a> FnOnce(ClarityDatabase<'a>) -> Result<T>,
    ) -> Result<T> {
        guarded(what, || {
            let mut block = self.store.block_store(self.reading_block(tip)?)?;
            let headers = self.headers();
            let burn = Burnchain {
                store: &self.store,
                ledger,
            };
            f(ClarityDatabase::new(&mut block, &headers, &burn))
        })
    }

    /// How many read-only answers the memo holds (see [`ClarityVm::call_read_only`]).
    pub fn read_only_answers_kept(&self) -> usize {
        self.reads.lock().map_or(0, |m| m.len())
    }

    /// Calls read-only function `function` of contract `name` by `issuer` on the state of
    /// block `tip`, within the read-only cost limit. Returns the value and its cost (the
    /// answer is kept: a stored block's state never changes).
    #[allow(clippy::too_many_arguments)]
    pub fn call_read_only(
        &self,
        tip: &[u8; 32],
        ledger: &dyn LedgerView,
        sender: [u8; 20],
        issuer: [u8; 20],
        name: &str,
        function: &str,
        args: &[Value],
    ) -> Result<(Value, ExecutionCost)> {
        // The state of a stored block never changes (a block's state is written once,
        // when it is accepted, and is a function of its id), nor do the ledger blocks it
        // sees: an answer found once is the answer. Loading a contract means parsing its
        // stored form, which dominated the node's time when the same checks (does this
        // node serve that model, who verifies this block) were asked for every result
        // and vote.
        let key: ReadKey = (
            *tip,
            sender,
            issuer,
            name.to_string(),
            function.to_string(),
            args.iter().map(consensus_bytes).collect(),
        );
        if let Some(known) = self.reads.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(known);
        }
        let id = self.contract_id(issuer, name)?;
        let answer = self.read_at("read-only call", tip, ledger, |mut db| {
            let tracker = LimitedCostTracker::new(
                self.mainnet(),
                self.chain_id(),
                self.config.read_only_limit.clone(),
                &mut db,
                EPOCH,
            )
            .map_err(|e| ClarityError::Vm(format!("cannot start cost tracking: {e:?}")))?;
            db.begin();
            if !db.has_contract(&id) {
                return Err(ClarityError::NoSuchContract(id.to_string()));
            }
            let atoms: Vec<SymbolicExpression> = args
                .iter()
                .cloned()
                .map(SymbolicExpression::atom_value)
                .collect();
            let sender = self.principal(sender);
            let (mut db, cost, r) = self.with_env(db, tracker, |env| {
                env.execute_in_env(sender, None, None, |e| {
                    e.execute_contract(&id, function, &atoms, true)
                })
            })?;
            db.roll_back();
            match r {
                Ok((value, _, _)) => Ok((value, cost)),
                Err(e) => Err(
                    match classify(e, |m| {
                        ClarityError::CallFailed(format!("{id} {function}: {m}"))
                    }) {
                        Failure::Other(e) => e,
                        Failure::Cost(used) => ClarityError::CostLimit {
                            used: show_cost(&used),
                            limit: show_cost(&self.config.read_only_limit),
                        },
                    },
                ),
            }
        })?;
        if let Ok(mut memo) = self.reads.lock() {
            if memo.len() >= MAX_READS_KEPT {
                memo.clear();
            }
            memo.insert(key, answer.clone());
        }
        Ok(answer)
    }

    /// The FAI balance (base units) and next nonce of `key_hash` on the state of `tip`.
    pub fn account(
        &self,
        tip: &[u8; 32],
        ledger: &dyn LedgerView,
        key_hash: [u8; 20],
    ) -> Result<(u128, u64)> {
        let who = self.principal(key_hash);
        self.read_at("account query", tip, ledger, |mut db| {
            db.begin();
            let balance = db.get_account_stx_balance(&who).get_total_balance();
            let nonce = db.get_account_nonce(&who);
            db.roll_back();
            Ok((balance, nonce))
        })
    }

    /// All FAI on this layer at `tip`.
    pub fn liquid_supply(&self, tip: &[u8; 32], ledger: &dyn LedgerView) -> Result<u128> {
        self.read_at("supply query", tip, ledger, |mut db| {
            db.begin();
            let supply = db.get_total_liquid_ustx();
            db.roll_back();
            Ok(supply)
        })
    }
}
