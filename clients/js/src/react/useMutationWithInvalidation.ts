/**
 * `useMutation` that invalidates `invalidateKeys` in this tab when the mutation succeeds. Other tabs
 * and users are updated by the sidecar's event; this tab is not sent its own echo (`X-Sync-Client`),
 * so it refreshes here, once.
 */

import {
  type DefaultError,
  type UseMutationOptions,
  type UseMutationResult,
  useMutation,
  useQueryClient,
} from "@tanstack/react-query";
import type { EventKey } from "../frames.js";
import { toKeys } from "../invalidation.js";
import { invalidateKeys as invalidate } from "./provider.js";

export type MutationWithInvalidationOptions<TData, TError, TVariables, TContext> = UseMutationOptions<
  TData,
  TError,
  TVariables,
  TContext
> & {
  /** `"projects"` means `["projects"]`; a key covers every query key it is a prefix of. */
  invalidateKeys?: readonly (string | EventKey)[];
};

export function useMutationWithInvalidation<
  TData = unknown,
  TError = DefaultError,
  TVariables = void,
  TContext = unknown,
>(
  options: MutationWithInvalidationOptions<TData, TError, TVariables, TContext>,
): UseMutationResult<TData, TError, TVariables, TContext> {
  const queryClient = useQueryClient();
  const { invalidateKeys = [], onSuccess, ...rest } = options;
  type SuccessArgs = Parameters<NonNullable<typeof onSuccess>>;
  return useMutation<TData, TError, TVariables, TContext>({
    ...rest,
    onSuccess: async (...args: SuccessArgs) => {
      await Promise.all([invalidate(queryClient, toKeys(invalidateKeys)), onSuccess?.(...args)]);
    },
  });
}
