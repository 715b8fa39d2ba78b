//! RPC methods as types: what `ferry-codegen` generates for each method of an application's
//! `methods.json`, so that a client's call is typed end to end (FERRY-RPC-1).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One RPC method of an application: its name and the types of its params and result.
///
/// `ferry-codegen generate` implements it for a unit type per method (`tasks:start` becomes
/// `TasksStart`); a client calls `client.rpc::<TasksStart>(&params)` and gets a
/// `TaskStarted` back.
pub trait Method {
    /// The method's name, in the channel grammar.
    const NAME: &'static str;
    /// What the call takes.
    type Params: Serialize;
    /// What the method returns.
    type Result: DeserializeOwned;
}
