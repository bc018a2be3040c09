/** Amounts and durations as people read them, the same on every platform. */

/** "$4.80"; amounts under a cent say so rather than "$0.00". */
export function usd(amount: number): string {
  return amount > 0 && amount < 0.005 ? "under $0.01" : `$${amount.toFixed(2)}`;
}

/** "3 h 12 min", "45 min", "2 days". */
export function inWords(seconds: number): string {
  const minutes = Math.max(1, Math.ceil(seconds / 60));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 === 0 ? `${hours} h` : `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days`;
}
