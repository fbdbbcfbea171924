//! `#[dmf_module]`: parse → validate → expand.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Fields, Ident, ItemStruct, LitBool, LitInt, LitStr, Path, Token, Type};

/// The open options, as the macro spells them, and the `OpenOption` variant each names.
const OPEN_OPTIONS: [&str; 7] = [
    "Create",
    "PrepareHardware",
    "D0Entry",
    "D0EntrySystemPowerUp",
    "NotifyCreate",
    "NotifyPrepareHardware",
    "NotifyD0Entry",
];
const LOCKS: [(&str, &str); 3] = [
    ("Passive", "PASSIVE"),
    ("Dispatch", "DISPATCH"),
    ("DispatchMaximum", "DISPATCH_MAXIMUM"),
];
const KEYS: &str =
    "config, context, shared, open, dynamic_open, lock, aux_locks, transport_required, child_limit, trace, name, crate";

/// The parsed arguments (the model).
#[derive(Default)]
pub(crate) struct Args {
    config: Option<Type>,
    context: Option<Type>,
    shared: Option<Type>,
    open: Option<Ident>,
    dynamic_open: Option<Ident>,
    lock: Option<Ident>,
    aux_locks: Option<LitInt>,
    transport_required: Option<LitBool>,
    child_limit: Option<LitInt>,
    trace: Option<LitInt>,
    name: Option<LitStr>,
    krate: Option<Path>,
}

fn push(errors: &mut Option<syn::Error>, error: syn::Error) {
    match errors {
        Some(e) => e.combine(error),
        None => *errors = Some(error),
    }
}

/// Skips to the next top-level comma (error recovery).
fn skip_value(input: ParseStream) {
    while !input.is_empty() && !input.peek(Token![,]) {
        let _ = input.parse::<proc_macro2::TokenTree>();
    }
}

fn set<T>(slot: &mut Option<T>, value: T, key: &Ident, errors: &mut Option<syn::Error>) {
    if slot.is_some() {
        push(
            errors,
            syn::Error::new(key.span(), format!("duplicate key `{key}`")),
        );
    } else {
        *slot = Some(value);
    }
}

fn parse_args(tokens: TokenStream) -> (Args, Option<syn::Error>) {
    let mut args = Args::default();
    let mut errors = None;
    let parser = |input: ParseStream| -> syn::Result<()> {
        while !input.is_empty() {
            let key = Ident::parse_any(input)?;
            if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
            } else {
                push(
                    &mut errors,
                    syn::Error::new(key.span(), format!("expected `{key} = …`")),
                );
                skip_value(input);
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
                continue;
            }
            let key_name = key.to_string();
            let result: syn::Result<()> = (|| {
                match key_name.as_str() {
                    "config" => set(&mut args.config, input.parse()?, &key, &mut errors),
                    "context" => set(&mut args.context, input.parse()?, &key, &mut errors),
                    "shared" => set(&mut args.shared, input.parse()?, &key, &mut errors),
                    "open" => set(&mut args.open, input.parse()?, &key, &mut errors),
                    "dynamic_open" => {
                        set(&mut args.dynamic_open, input.parse()?, &key, &mut errors);
                    }
                    "lock" => set(&mut args.lock, input.parse()?, &key, &mut errors),
                    "aux_locks" => set(&mut args.aux_locks, input.parse()?, &key, &mut errors),
                    "transport_required" => {
                        set(
                            &mut args.transport_required,
                            input.parse()?,
                            &key,
                            &mut errors,
                        );
                    }
                    "child_limit" => set(&mut args.child_limit, input.parse()?, &key, &mut errors),
                    "trace" => set(&mut args.trace, input.parse()?, &key, &mut errors),
                    "name" => set(&mut args.name, input.parse()?, &key, &mut errors),
                    "crate" => set(&mut args.krate, input.parse()?, &key, &mut errors),
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            format!("unknown key `{key}`; expected one of: {KEYS}"),
                        ))
                    }
                }
                Ok(())
            })();
            if let Err(error) = result {
                push(&mut errors, error);
                skip_value(input);
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        push(&mut errors, error);
    }
    (args, errors)
}

fn int(
    lit: Option<&LitInt>,
    default: u8,
    max: u8,
    what: &str,
    errors: &mut Option<syn::Error>,
) -> u8 {
    let Some(lit) = lit else { return default };
    match lit.base10_parse::<u8>() {
        Ok(v) if v <= max => v,
        _ => {
            push(
                errors,
                syn::Error::new(lit.span(), format!("`{what}` must be 0…{max}")),
            );
            default
        }
    }
}

/// The model after validation.
struct Model {
    krate: TokenStream,
    config: Type,
    context: Type,
    shared: Type,
    open: Ident,
    dynamic_open: Ident,
    lock: Ident,
    transport_required: bool,
    aux_locks: u8,
    child_limit: u8,
    trace: u8,
    name: String,
}

/// Where a missing key is reported: the attribute's first argument token, or the struct's name for
/// an empty attribute — a token of the author's, not the whole attribute.
fn missing_key_span(args: &TokenStream, item: &ItemStruct) -> Span {
    args.clone()
        .into_iter()
        .next()
        .map_or_else(|| item.ident.span(), |token| token.span())
}

/// `open` and `dynamic_open` (which defaults to `open`).
fn open_options(
    open: Option<Ident>,
    dynamic_open: Option<Ident>,
    missing: Span,
    errors: &mut Option<syn::Error>,
) -> (Ident, Ident) {
    let open = match open {
        Some(open) if OPEN_OPTIONS.contains(&open.to_string().as_str()) => open,
        Some(open) => {
            push(
                errors,
                syn::Error::new(
                    open.span(),
                    format!(
                        "unknown open option `{open}`; expected one of: {}",
                        OPEN_OPTIONS.join(", ")
                    ),
                ),
            );
            format_ident!("Create")
        }
        None => {
            push(
                errors,
                syn::Error::new(missing, "missing `open = <option>`"),
            );
            format_ident!("Create")
        }
    };
    // The open option of a dynamic instance: `Create` or `NotifyCreate` (a dynamic Module is
    // opened or registered by its creation, never by a WDF callback).
    let dynamic_open = match dynamic_open {
        Some(d) if d == "Create" || d == "NotifyCreate" => d,
        Some(d) => {
            push(
                errors,
                syn::Error::new(
                    d.span(),
                    format!("`dynamic_open = {d}`: a dynamic Module opens on its creation; expected Create or NotifyCreate"),
                ),
            );
            open.clone()
        }
        None => open.clone(),
    };
    (open, dynamic_open)
}

fn validate(
    args: Args,
    missing: Span,
    item: &ItemStruct,
    errors: &mut Option<syn::Error>,
) -> Model {
    let krate = args
        .krate
        .as_ref()
        .map_or_else(|| quote!(::dmf::core), |p| quote!(#p));
    let config = args.config.unwrap_or_else(|| {
        push(
            errors,
            syn::Error::new(
                missing,
                "missing `config = <type>` (write `config = ()` for a Module without a config)",
            ),
        );
        syn::parse_quote!(())
    });
    let context = args.context.unwrap_or_else(|| syn::parse_quote!(()));
    let shared = args.shared.unwrap_or_else(|| syn::parse_quote!(()));
    let (open, dynamic_open) = open_options(args.open, args.dynamic_open, missing, errors);
    let lock = if let Some(lock) = args.lock {
        if let Some((_, flag)) = LOCKS.iter().find(|(k, _)| lock == k) {
            Ident::new(flag, lock.span())
        } else {
            push(
                errors,
                syn::Error::new(
                    lock.span(),
                    format!("unknown lock `{lock}`; expected Passive, Dispatch or DispatchMaximum"),
                ),
            );
            format_ident!("DISPATCH")
        }
    } else {
        push(
            errors,
            syn::Error::new(
                missing,
                "missing `lock = Passive | Dispatch | DispatchMaximum`",
            ),
        );
        format_ident!("DISPATCH")
    };
    if !item.generics.params.is_empty() {
        push(
            errors,
            syn::Error::new(item.generics.span(), "a Module handle cannot be generic"),
        );
    }
    if !matches!(item.fields, Fields::Unit) {
        push(
            errors,
            syn::Error::new(item.fields.span(), "#[dmf_module] goes on a unit struct (`pub struct Name;`): the fields are the framework's"),
        );
    }
    Model {
        krate,
        config,
        context,
        shared,
        open,
        dynamic_open,
        lock,
        transport_required: args.transport_required.is_some_and(|b| b.value),
        aux_locks: int(args.aux_locks.as_ref(), 0, 4, "aux_locks", errors),
        child_limit: int(args.child_limit.as_ref(), 16, 255, "child_limit", errors),
        trace: int(args.trace.as_ref(), 0, 64, "trace", errors),
        name: args
            .name
            .map_or_else(|| item.ident.to_string(), |n| n.value()),
    }
}

/// The private access trait through which the Module alone reaches its own config, context,
/// shared state and locks.
fn access_trait(
    model: &Model,
    ident: &syn::Ident,
    key: &syn::Ident,
    access: &syn::Ident,
) -> TokenStream {
    let Model {
        krate,
        config,
        context,
        shared,
        ..
    } = model;
    quote! {
    /// The Module's private access to its own config, context and locks.
    #[allow(dead_code, non_camel_case_types)]
    trait #access {
        /// `DMF_CONFIG_GET`: the Module's own copy of its config.
        fn config(&self) -> &#config;
        /// `DMF_ModuleLock` + `DMF_CONTEXT_GET`: the context under the Module's lock.
        fn lock(&self) -> #krate::module::ModuleLockGuard<'_, #context>;
        /// `DMF_ModuleAuxiliaryLock`.
        fn aux_lock(&self, index: usize) -> #krate::NtResult<#krate::module::ModuleLockGuard<'_, ()>>;
        /// The Module's shared state: built from its config at create, reached without its
        /// lock (atomics, lock-free structures), kept until the Module is destroyed.
        fn shared(&self) -> &#shared;
    }

    impl #access for #krate::module::Scope<'_, #ident> {
        fn config(&self) -> &#config {
            self.__cell::<#key, #config, #context, #shared>().config()
        }
        fn lock(&self) -> #krate::module::ModuleLockGuard<'_, #context> {
            self.__cell::<#key, #config, #context, #shared>().lock()
        }
        fn aux_lock(&self, index: usize) -> #krate::NtResult<#krate::module::ModuleLockGuard<'_, ()>> {
            self.__cell::<#key, #config, #context, #shared>().aux_lock(index)
        }
        fn shared(&self) -> &#shared {
            self.__cell::<#key, #config, #context, #shared>().shared()
        }
    }
    }
}

fn generate(model: &Model, item: &ItemStruct) -> TokenStream {
    let Model {
        krate,
        config,
        context,
        shared,
        open,
        dynamic_open,
        lock,
        transport_required,
        aux_locks,
        child_limit,
        trace,
        name,
    } = model;
    let ident = &item.ident;
    let vis = &item.vis;
    let attrs = &item.attrs;
    let key = format_ident!("__DmfKey{}", ident);
    let access = format_ident!("__Dmf{}Access", ident);
    let access_trait = access_trait(model, ident, &key, &access);
    let transport = if *transport_required {
        quote!(.union(#krate::module::ModuleOptions::TRANSPORT_REQUIRED))
    } else {
        quote!()
    };
    let span = ident.span();
    let with_doc = format!(
        "The spec of a `{ident}` Module with `config` (C DMF: `DMF_CONFIG_{ident}_AND_ATTRIBUTES_INIT`): add it with `ModuleInit::add`, or create it dynamically with `.create(&parent)`."
    );
    quote_spanned! {span=>
        #(#attrs)*
        #[derive(Clone)]
        #vis struct #ident {
            __dmf: #krate::module::ModuleRef,
        }

        #[automatically_derived]
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_tuple(#name).field(&self.__dmf).finish()
            }
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct #key;

        #[automatically_derived]
        impl #krate::module::Module for #ident {
            const DESCRIPTOR: #krate::module::ModuleDescriptor = #krate::module::ModuleDescriptor {
                name: #name,
                options: #krate::module::ModuleOptions::#lock #transport,
                open_option: #krate::module::OpenOption::#open,
                dynamic_open_option: #krate::module::OpenOption::#dynamic_open,
                aux_locks: #aux_locks,
                callbacks: <Self as #krate::module::ModuleCallbacks>::IMPLEMENTED,
                child_limit: #child_limit,
                trace_capacity: #trace,
            };
            fn __from_ref(object: #krate::module::ModuleRef) -> Self {
                #ident { __dmf: object }
            }
            fn __ref(&self) -> &#krate::module::ModuleRef {
                &self.__dmf
            }
        }

        impl #ident {
            #[doc = #with_doc]
            #vis fn with(config: #config) -> #krate::module::ModuleSpec<#ident> {
                #krate::module::__private::spec::<#ident, #config, #context, #shared, #key>(config)
            }

            /// Enters a Method: the rundown-guarded scope; `STATUS_INVALID_DEVICE_STATE` unless open.
            #[allow(dead_code)]
            #[inline]
            fn enter(&self) -> #krate::NtResult<#krate::module::Method<'_, #ident>> {
                #krate::module::__private::enter(self)
            }

            /// Enters a lock-free Method: the Module's shared state if the Module is open now,
            /// `STATUS_INVALID_DEVICE_STATE` otherwise. No rundown guard: only for steps the
            /// Module's close shuts out itself (see `dmf_core::free_list`).
            #[allow(dead_code)]
            #[inline]
            fn enter_lock_free(&self) -> #krate::NtResult<&#shared> {
                #krate::module::__private::enter_lock_free::<#ident, #key, #config, #context, #shared>(self)
            }

            /// `DMF_ModuleNotificationOpen`: opens this Module from its own notification.
            #[allow(dead_code)]
            fn notification_open(&self) -> #krate::NtResult<()> {
                #krate::module::__private::notification_open(self)
            }

            /// `DMF_ModuleNotificationClose`: closes this Module from its own notification.
            #[allow(dead_code)]
            fn notification_close(&self) {
                #krate::module::__private::notification_close(self);
            }
        }

        #access_trait
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let Ok(item) = syn::parse2::<ItemStruct>(item.clone()) else {
        {
            let error = syn::Error::new(
                item.span(),
                "#[dmf_module] goes on a unit struct (`pub struct Name;`)",
            );
            let mut out = item;
            out.extend(error.to_compile_error());
            return out;
        }
    };
    let missing = missing_key_span(&args, &item);
    let (args, mut errors) = parse_args(args);
    let model = validate(args, missing, &item, &mut errors);
    let mut out = generate(&model, &item);
    if let Some(errors) = errors {
        out.extend(errors.to_compile_error());
    }
    out
}
