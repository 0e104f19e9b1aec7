//! Process lifecycle: start servers, handle signals, reload, drain.
